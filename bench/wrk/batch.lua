-- Durable batch publishes: BATCH new CloudEvents per request. TOKEN, FEED, BATCH and PREFIX (unique per run) from the environment.
local counter = 0
local prefix = os.getenv("PREFIX")
local token = os.getenv("TOKEN")
local size = tonumber(os.getenv("BATCH"))
local path = "/v1/feeds/" .. os.getenv("FEED") .. "/events"
local headers = { ["Content-Type"] = "application/cloudevents-batch+json", ["Authorization"] = "Bearer " .. token }
local note = string.rep("x", 120)

request = function()
  local events = {}
  for i = 1, size do
    counter = counter + 1
    events[i] = '{"specversion":"1.0","id":"' .. prefix .. "-" .. counter ..
      '","source":"urn:nld:oin:00000001823288444000:systeem:bench","type":"nl.example.bench.changed",' ..
      '"subject":"object-' .. (counter % 1000) .. '","time":"2026-11-29T12:00:00Z",' ..
      '"datacontenttype":"application/json","data":{"object":' .. counter .. ',"note":"' .. note .. '"}}'
  end
  return wrk.format("POST", path, headers, "[" .. table.concat(events, ",") .. "]")
end
