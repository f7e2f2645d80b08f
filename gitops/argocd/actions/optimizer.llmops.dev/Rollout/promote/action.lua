-- Skip the current pause or analysis step (llm-optimizer rollout promote).
obj.spec.stepPromotions = (obj.spec.stepPromotions or 0) + 1
obj.spec.paused = false
return obj
