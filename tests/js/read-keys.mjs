// Reads a key answer the way OpenPGP.js clients do, and prints what they get, as JSON.
//   node read-keys.mjs URL whole   -> readKeys over the whole answer (@openpgp/hkp-client,
//                                     @openpgp/wkd-client and most apps do this)
//   node read-keys.mjs URL blocks  -> FlowCrypt's browser: each armor block of the answer
//                                     (MsgBlockParser.detectBlocks) read on its own, and
//                                     refused unless it holds exactly one key (KeyUtil.parse)
import * as openpgp from 'openpgp';

const [url, mode] = process.argv.slice(2);
const response = await fetch(url);
const text = await response.text();
const out = { status: response.status, fingerprints: [], errors: [] };
if (response.ok) {
  if (mode === 'whole') {
    const keys = await openpgp.readKeys({ armoredKeys: text });
    out.fingerprints = keys.map((k) => k.getFingerprint().toUpperCase());
  } else {
    const blocks = text.match(/-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----/g) ?? [];
    for (const block of blocks) {
      const keys = await openpgp.readKeys({ armoredKeys: block });
      if (keys.length !== 1) {
        out.errors.push(`Found ${keys.length} OpenPGP keys, expected one`);
        continue;
      }
      out.fingerprints.push(keys[0].getFingerprint().toUpperCase());
    }
  }
}
console.log(JSON.stringify(out));
