-- Durable single-event publishes: a new CloudEvent (unique id) per request. TOKEN, FEED and PREFIX (unique per run) from the environment.
local counter = 0
local prefix = os.getenv("PREFIX")
local token = os.getenv("TOKEN")
local path = "/v1/feeds/" .. os.getenv("FEED") .. "/events"
local headers = { ["Content-Type"] = "application/cloudevents+json", ["Authorization"] = "Bearer " .. token }
local note = string.rep("x", 120)

request = function()
  counter = counter + 1
  local body = '{"specversion":"1.0","id":"' .. prefix .. "-" .. counter ..
    '","source":"urn:nld:oin:00000001823288444000:systeem:bench","type":"nl.example.bench.changed",' ..
    '"subject":"object-' .. (counter % 1000) .. '","time":"2026-11-29T12:00:00Z",' ..
    '"datacontenttype":"application/json","data":{"object":' .. counter .. ',"note":"' .. note .. '"}}'
  return wrk.format("POST", path, headers, body)
end
