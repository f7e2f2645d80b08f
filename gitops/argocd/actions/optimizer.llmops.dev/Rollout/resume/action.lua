-- Go on from where the pause froze it (rollout resume).
obj.spec.paused = false
return obj
