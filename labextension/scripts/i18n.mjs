// Checks the translation catalogs in server_extension/locale against the strings
// of src/: every `trans.__('...')` must have a translation, and the catalogs must
// hold no stale entries. `node scripts/i18n.mjs --list` prints the msgids.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const DOMAIN = 'ai_console';
const here = import.meta.dirname;
const srcDir = join(here, '..', 'src');
const localeDir = join(here, '..', '..', 'server_extension', 'locale');

/** Reads a JS string literal's body (quotes already stripped). */
function unquote(body, quote) {
  return JSON.parse(
    '"' +
      body
        .replace(new RegExp('\\\\' + quote, 'g'), quote)
        .replace(/(^|[^\\])"/g, '$1\\"') +
      '"'
  );
}

function extract() {
  const ids = new Set();
  const call = /trans\.__\(\s*(['"])((?:\\.|(?!\1)[^\\])*)\1/g;
  for (const name of readdirSync(srcDir)) {
    const path = join(srcDir, name);
    if (!statSync(path).isFile() || !/\.tsx?$/.test(name)) {
      continue;
    }
    const text = readFileSync(path, 'utf-8');
    for (const match of text.matchAll(call)) {
      ids.add(unquote(match[2], match[1]));
    }
  }
  return [...ids].sort();
}

const ids = extract();
if (process.argv.includes('--list')) {
  console.log(JSON.stringify(ids, null, 2));
  process.exit(0);
}

let failures = 0;
for (const locale of readdirSync(localeDir)) {
  const file = join(localeDir, locale, 'LC_MESSAGES', `${DOMAIN}.json`);
  const catalog = JSON.parse(readFileSync(file, 'utf-8'));
  const header = catalog[''];
  if (
    !header ||
    header.domain !== DOMAIN ||
    !header.language ||
    !header.plural_forms
  ) {
    console.error(
      `${file}: the "" entry needs domain, language and plural_forms`
    );
    failures++;
  }
  for (const id of ids) {
    const entry = catalog[id];
    if (!Array.isArray(entry) || entry.length !== 1 || !entry[0]) {
      console.error(`${locale}: missing translation of ${JSON.stringify(id)}`);
      failures++;
    }
  }
  for (const id of Object.keys(catalog)) {
    if (id && !ids.includes(id) && !id.includes('\u0004')) {
      console.error(`${locale}: stale entry ${JSON.stringify(id)}`);
      failures++;
    }
  }
  console.log(`${locale}: ${ids.length} strings checked`);
}
process.exit(failures ? 1 : 0);
