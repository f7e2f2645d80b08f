-- Argo CD health of an optimizer.llmops.dev Rollout (resource.customizations.health).
-- Promoted: Healthy. Paused (a person's gate or spec.paused): Suspended. Holding
-- (missing data, waiting), Baking (promoted, watched at full traffic) and steps in
-- progress: Progressing. RolledBack, Aborted, Failed: Degraded, with the reason.
local hs = {status = "Progressing", message = "waiting for the operator"}
local st = obj.status
if st == nil then
  return hs
end
local gen = obj.metadata and obj.metadata.generation
if gen ~= nil and st.observedGeneration ~= nil and st.observedGeneration < gen then
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
local phase = st.phase or "Pending"
local msg = st.message or phase
if phase == "Promoted" then
  hs.status = "Healthy"
elseif phase == "Paused" then
  hs.status = "Suspended"
elseif phase == "RolledBack" or phase == "Aborted" or phase == "Failed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"  -- Pending, Progressing, Holding, Baking
end
hs.message = phase .. ": " .. msg
return hs
