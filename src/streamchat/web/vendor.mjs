// Copies the page's browser libraries from node_modules (installed by `npm ci` from package-lock.json)
// into static/vendor/, where the server serves them and where a wheel picks them up as package data.
// Run by scripts/lib/setup.sh (ensure_page_assets) and by setup.py's build hook; never by hand needed.
// No bundler: each library publishes a minified browser build that defines one global.
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const vendor = join(here, "static", "vendor");

// static/vendor/<name> <- node_modules/<path>; index.html loads these names.
const FILES = {
  "markdown-it.min.js": "markdown-it/dist/browser/markdown-it.umd.min.js", // global markdownit
  "purify.min.js": "dompurify/dist/purify.min.js", // global DOMPurify
  "highlight.min.js": "@highlightjs/cdn-assets/highlight.min.js", // global hljs, the "common" languages
  "highlight-github.min.css": "@highlightjs/cdn-assets/styles/github.min.css",
};

// Every package whose code ends up in those files (markdown-it's browser build bundles its
// dependencies), for the notices a redistributed copy must carry.
const LICENSED = ["markdown-it", "entities", "linkify-it", "mdurl", "punycode.js", "uc.micro", "dompurify",
  "@highlightjs/cdn-assets"];
const LICENSE_FILES = ["LICENSE", "LICENSE.txt", "LICENSE-MIT.txt", "LICENSE-MPL"];

function licenseText(name) {
  const meta = JSON.parse(readFileSync(join(modules, name, "package.json"), "utf8"));
  const texts = LICENSE_FILES.flatMap((file) => {
    try { return [readFileSync(join(modules, name, file), "utf8").trim()]; } catch { return []; }
  });
  if (!texts.length) throw new Error(`no license file found in node_modules/${name}`);
  return `${meta.name} ${meta.version} (${meta.license})\n\n${texts.join("\n\n")}`;
}

// Start from an empty folder, so a file dropped from the list does not linger in the next wheel.
rmSync(vendor, { recursive: true, force: true });
mkdirSync(vendor, { recursive: true });
for (const [name, source] of Object.entries(FILES)) copyFileSync(join(modules, source), join(vendor, name));
const rule = "\n\n" + "-".repeat(78) + "\n\n";
writeFileSync(join(vendor, "LICENSES.txt"),
  "Third-party code in this folder, copied from these npm packages:\n\n" + LICENSED.map(licenseText).join(rule) + "\n");
console.log(`copied ${Object.keys(FILES).length} files and LICENSES.txt into ${vendor}`);
