-- Argo CD health of an optimizer.llmops.dev OptimizationPolicy.
-- A running loop is Healthy whatever it is doing (a trial in flight is normal
-- work, not an unfinished sync). Ready=False (e.g. InvalidSpec): Degraded. The
-- circuit breaker open (too many failed trials): Degraded until it closes.
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
    if c.status == "False" then
      hs.status = "Degraded"
      hs.message = (c.reason or "NotReady") .. ": " .. (c.message or "")
      return hs
    end
    if c.status == "True" then
      if st.breakerOpenUntil ~= nil and st.breakerOpenUntil ~= "" then
        hs.status = "Degraded"
        hs.message = "circuit breaker open until " .. st.breakerOpenUntil
      else
        hs.status = "Healthy"
        hs.message = (st.state or "Idle") .. ": " .. (st.lastDecision or st.message or "")
      end
      return hs
    end
  end
end
return hs
