-- Start a rolled-back or aborted rollout again from step 0 (rollout retry).
obj.spec.retry = (obj.spec.retry or 0) + 1
obj.spec.abort = false
obj.spec.promote = false
return obj
