// Preload (`node -r ./loopback.cjs …`) that makes every server bind 127.0.0.1 instead of all
// interfaces: tests run peers that would otherwise listen on the machine's network.
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (typeof first === "number" || (typeof first === "string" && /^\d+$/.test(first))) {
    const callback = args.find((a) => typeof a === "function");
    return callback
      ? listen.call(this, Number(first), "127.0.0.1", callback)
      : listen.call(this, Number(first), "127.0.0.1");
  }
  if (first && typeof first === "object" && !("path" in first)) {
    args[0] = { ...first, host: "127.0.0.1" };
  }
  return listen.apply(this, args);
};
