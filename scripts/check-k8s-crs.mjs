// Validates custom resources against the schemas of their operators' CRDs, as published on
// npm by kubernetes-models (KEDA, Prometheus Operator). Reads a JSON array of resources on
// stdin; prints one line per resource; exits 1 if any is invalid.
// Usage: node check-k8s-crs.mjs TOOLS_DIR < resources.json
import { readFileSync } from "node:fs";

const tools = process.argv[2];
const groups = {
  "keda.sh/v1alpha1": `${tools}/node_modules/@kubernetes-models/keda/keda.sh/v1alpha1/index.js`,
  "monitoring.coreos.com/v1": `${tools}/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js`,
  "monitoring.coreos.com/v1alpha1": `${tools}/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1alpha1/index.js`,
};
const resources = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const r of resources) {
  const name = `${r.kind}/${r.metadata?.name}`;
  const path = groups[r.apiVersion];
  if (!path) {
    console.log(`NOSCHEMA ${name} (${r.apiVersion})`);
    failed++;
    continue;
  }
  const models = await import(path);
  const Model = models[r.kind];
  if (!Model) {
    console.log(`NOSCHEMA ${name}: no kind ${r.kind} in ${r.apiVersion}`);
    failed++;
    continue;
  }
  try {
    new Model(r).validate();
    console.log(`OK ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
