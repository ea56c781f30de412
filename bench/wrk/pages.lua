-- Pages of LIMIT events at random whole-page cursors in a feed of EVENTS events. TOKEN, FEED, EVENTS, LIMIT; an
-- empty TOKEN sends none (a public feed, read through a cache).
local token = os.getenv("TOKEN")
local events = tonumber(os.getenv("EVENTS"))
local limit = tonumber(os.getenv("LIMIT"))
local base = "/v1/feeds/" .. os.getenv("FEED") .. "/events?limit=" .. limit .. "&after="
local headers = {}
if token ~= nil and token ~= "" then headers["Authorization"] = "Bearer " .. token end
local pages = math.floor(events / limit)

request = function()
  local after = math.random(0, pages - 1) * limit
  return wrk.format("GET", base .. after, headers)
end
