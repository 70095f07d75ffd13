// The compiled addon; see src/vsock.c. CommonJS so the agent's bundle can require it as is.
module.exports = require("./build/Release/vsock.node");
