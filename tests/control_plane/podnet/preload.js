// Cluster names for Node.js in a process-kubelet container (tests/control_plane/services.py),
// loaded with NODE_OPTIONS=--require: dns.lookup (what net and http connect with) resolves
// <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.cluster.local from the kubelet's table
// ($TEST_KUBELET_SERVICES), the pod's namespace being the search domain.
'use strict';
const dns = require('dns');
const fs = require('fs');

const table = process.env.TEST_KUBELET_SERVICES || '';
const namespace = process.env.TEST_KUBELET_NAMESPACE || 'default';
let cache = { mtime: null, names: {} };

function names() {
  try {
    const mtime = fs.statSync(table).mtimeMs;
    if (mtime !== cache.mtime) cache = { mtime, names: JSON.parse(fs.readFileSync(table, 'utf8')) };
  } catch (err) {
    // no table yet, or half written: what was read before
  }
  return cache.names;
}

function clusterAddress(host) {
  if (!table || typeof host !== 'string' || !host) return null;
  let name = host.replace(/\.$/, '').toLowerCase();
  if (/[0-9]$/.test(name) || name.includes(':')) return null;
  for (const suffix of ['.svc.cluster.local', '.svc']) {
    if (name.endsWith(suffix)) { name = name.slice(0, -suffix.length); break; }
  }
  const parts = name.split('.');
  let key = null;
  if (parts.length === 1) key = `${namespace}/${parts[0]}`;
  else if (parts.length === 2) key = `${parts[1]}/${parts[0]}`;
  return key ? names()[key] || null : null;
}

const lookup = dns.lookup;
dns.lookup = function (hostname, options, callback) {
  const address = clusterAddress(hostname);
  if (!address) return lookup.apply(this, arguments);
  if (typeof options === 'function') { callback = options; options = {}; }
  if (typeof options === 'number') options = { family: options };
  options = options || {};
  process.nextTick(() => {
    if (options.all) callback(null, [{ address, family: 4 }]);
    else callback(null, address, 4);
  });
  return {};
};

const promiseLookup = dns.promises.lookup;
dns.promises.lookup = async function (hostname, options) {
  const address = clusterAddress(hostname);
  if (!address) return promiseLookup.apply(this, arguments);
  return options && options.all ? [{ address, family: 4 }] : { address, family: 4 };
};
