// Compiles testdata/contracts/TestToken.sol with solc-js and OpenZeppelin from .tools and
// writes the creation bytecode of each contract in it to .tools/<Name>.bin (hex, no 0x):
// TestToken (a plain ERC-20) and FalseToken (transfer returns false). Run by scripts/tools.sh.
const fs = require("fs");
const path = require("path");
const root = path.resolve(__dirname, "..");
const modules = path.join(root, ".tools", "node_modules");
const solc = require(path.join(modules, "solc"));
const source = fs.readFileSync(path.join(root, "testdata/contracts/TestToken.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "TestToken.sol": { content: source } },
  settings: { optimizer: { enabled: true, runs: 200 }, evmVersion: "paris", outputSelection: { "*": { "*": ["evm.bytecode.object"] } } },
};
function findImports(p) {
  try {
    return { contents: fs.readFileSync(path.join(modules, p), "utf8") };
  } catch (e) {
    return { error: "not found: " + p };
  }
}
const out = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (out.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
// FalseToken first: tools.sh rebuilds while TestToken.bin is missing or older than the source.
for (const name of ["FalseToken", "TestToken"]) {
  const bin = out.contracts["TestToken.sol"][name].evm.bytecode.object;
  fs.writeFileSync(path.join(root, ".tools", name + ".bin"), bin);
}
