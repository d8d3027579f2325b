-- confit: the user-facing module, built on the C module confit.core.
local core = require "confit.core"
local confit = setmetatable({}, {__index = core})
confit.tokenizer = function(path) return require("confit.tokenizer").new(path) end
return confit
