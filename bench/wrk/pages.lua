-- Pages of LIMIT events at random whole-page cursors in a feed of EVENTS events. TOKEN, FEED, EVENTS, LIMIT.
local token = os.getenv("TOKEN")
local events = tonumber(os.getenv("EVENTS"))
local limit = tonumber(os.getenv("LIMIT"))
local base = "/v1/feeds/" .. os.getenv("FEED") .. "/events?limit=" .. limit .. "&after="
local headers = { ["Authorization"] = "Bearer " .. token }
local pages = math.floor(events / limit)

request = function()
  local after = math.random(0, pages - 1) * limit
  return wrk.format("GET", base .. after, headers)
end
