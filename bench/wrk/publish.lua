-- Durable single-event publishes: a new CloudEvent (unique id) per request. TOKEN, FEED and PREFIX (unique per run) from the environment.
-- DATA=parcel sends data of ten members (what publish-schema's schema describes) instead of two.
local counter = 0
local prefix = os.getenv("PREFIX")
local token = os.getenv("TOKEN")
local path = "/v1/feeds/" .. os.getenv("FEED") .. "/events"
local headers = { ["Content-Type"] = "application/cloudevents+json", ["Authorization"] = "Bearer " .. token }
local note = string.rep("x", 120)
local parcel = os.getenv("DATA") == "parcel"

local function data()
  if not parcel then
    return '{"object":' .. counter .. ',"note":"' .. note .. '"}'
  end
  return '{"object":' .. counter .. ',"note":"' .. note .. '","perceel":"DLF01-K-' .. counter ..
    '","gemeente":"Delft","oppervlakte":' .. (counter % 5000 + 1) .. ',"datum":"2026-11-29",' ..
    '"status":"overgedragen","eigenaar":"NL.IMKAD.Persoon.' .. counter .. '","aandeel":0.5,"actief":true}'
end

request = function()
  counter = counter + 1
  local body = '{"specversion":"1.0","id":"' .. prefix .. "-" .. counter ..
    '","source":"urn:nld:oin:00000001823288444000:systeem:bench","type":"nl.example.bench.changed",' ..
    '"subject":"object-' .. (counter % 1000) .. '","time":"2026-11-29T12:00:00Z",' ..
    '"datacontenttype":"application/json","data":' .. data() .. '}'
  return wrk.format("POST", path, headers, body)
end
