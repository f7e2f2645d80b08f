-- Freeze at the current step (rollout pause).
obj.spec.paused = true
return obj
