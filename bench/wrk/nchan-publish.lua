-- nchan's publish endpoint with a body the size of a bench event.
local body = '{"specversion":"1.0","id":"nchan","source":"urn:nld:oin:00000001823288444000:systeem:bench",' ..
  '"type":"nl.example.bench.changed","subject":"object-1","time":"2026-11-29T12:00:00Z",' ..
  '"datacontenttype":"application/json","data":{"object":1,"note":"' .. string.rep("x", 120) .. '"}}'
request = function()
  return wrk.format("POST", "/pub", { ["Content-Type"] = "application/json" }, body)
end
