// Preloaded (NODE_OPTIONS=--require) into Node tools the bench runs without a proxy (npm in the
// direct runs and the registry fill): bench.test, *.bench.test and *.work.test resolve to 127.0.0.1, as the
// proxies' resolve maps and hosts files have them. Nothing else changes.
const dns = require('node:dns');
const original = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (typeof options === 'function') [options, callback] = [{}, options];
  if (typeof hostname === 'string' && (hostname === 'bench.test' || hostname.endsWith('.bench.test') || hostname.endsWith('.work.test'))) {
    const all = typeof options === 'object' && options !== null && options.all;
    return process.nextTick(() => (all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4)));
  }
  return original.call(this, hostname, options, callback);
};
