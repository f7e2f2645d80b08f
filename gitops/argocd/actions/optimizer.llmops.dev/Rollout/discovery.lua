-- Argo CD resource actions of an optimizer.llmops.dev Rollout (discovery.lua): which of
-- promote, promote-full, abort, retry, pause and resume apply to the object as it is.
-- Each action only writes the Rollout's spec, as the CLI does; the operator acts on it.
local actions = {}
local spec = obj.spec or {}
local phase = (obj.status and obj.status.phase) or "Pending"
local ended = phase == "Promoted" or phase == "RolledBack" or phase == "Aborted"
  or phase == "Failed"
local running = phase == "Progressing" or phase == "Paused" or phase == "Holding"
local live = not ended and phase ~= "Baking" and spec.abort ~= true
actions["promote"] = {["disabled"] = not (running and live)}
actions["promote-full"] = {["disabled"] = not live or spec.promote == true}
actions["abort"] = {["disabled"] = not live}
actions["retry"] = {["disabled"] = not (phase == "RolledBack" or phase == "Aborted"
  or phase == "Failed")}
actions["pause"] = {["disabled"] = not live or spec.paused == true}
actions["resume"] = {["disabled"] = spec.paused ~= true or ended}
return actions
