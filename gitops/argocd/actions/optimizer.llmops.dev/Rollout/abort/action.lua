-- Restore stable's weights now; the candidate is not promoted (rollout abort).
obj.spec.abort = true
return obj
