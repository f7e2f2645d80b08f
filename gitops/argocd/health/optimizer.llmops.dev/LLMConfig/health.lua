-- Argo CD health of an optimizer.llmops.dev LLMConfig.
-- Ready=True: Healthy (Progressing while a Rollout changes it). Ready=False:
-- Degraded with the condition's reason (InvalidSpec, a missing target, ...).
local hs = {status = "Progressing", message = "waiting for the operator"}
local st = obj.status
if st == nil or st.conditions == nil then
  return hs
end
local gen = obj.metadata and obj.metadata.generation
if gen ~= nil and st.observedGeneration ~= nil and st.observedGeneration < gen then
  hs.message = "the operator has not seen the latest spec yet"
  return hs
end
for _, c in ipairs(st.conditions) do
  if c.type == "Ready" then
    if c.status == "True" then
      if st.activeRollout ~= nil and st.activeRollout ~= "" then
        hs.status = "Progressing"
        hs.message = "Rollout " .. st.activeRollout .. " in progress"
      else
        hs.status = "Healthy"
        hs.message = st.message or c.message or "ready"
      end
    elseif c.status == "False" then
      hs.status = "Degraded"
      hs.message = (c.reason or "NotReady") .. ": " .. (c.message or "")
    else
      hs.message = c.message or "Ready unknown"
    end
    return hs
  end
end
return hs
