// Liaison audit console: the page's own check of an inclusion proof, and small form helpers.
// The proof check is RFC 9162 section 2.1.3.2, written from the RFC, with the browser's
// SubtleCrypto SHA-256: leaf hash = SHA-256(0x00 || leaf bytes), node = SHA-256(0x01 || l || r).
"use strict";

(function () {
  function hexToBytes(hex) {
    if (!/^(?:[0-9a-f]{2})*$/.test(hex)) throw new Error("not lower-case hex");
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  }

  const leafHash = (entry) => sha256(concat(Uint8Array.of(0x00), entry));
  const nodeHash = (left, right) => sha256(concat(Uint8Array.of(0x01), left, right));

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  // RFC 9162 2.1.3.2: verify that `leaf` (a leaf hash) is at `index` in the tree of `size`
  // leaves whose root is `root`, given the inclusion proof `path`. Returns the computed root,
  // or null when the proof is malformed for this index and size.
  async function rootFromInclusionProof(index, size, leaf, path) {
    if (index >= size) return null;                       // step 1
    let fn = index, sn = size - 1n, r = leaf;             // steps 2-3
    for (const p of path) {                               // step 4
      if (p.length !== 32 || sn === 0n) return null;      // 4a
      if ((fn & 1n) === 1n || fn === sn) {                // 4b
        r = await nodeHash(p, r);
        if ((fn & 1n) === 0n) {
          while (!((fn & 1n) === 1n || fn === 0n)) { fn >>= 1n; sn >>= 1n; }
        }
      } else {                                            // 4c
        r = await nodeHash(r, p);
      }
      fn >>= 1n; sn >>= 1n;
    }
    return sn === 0n ? r : null;                          // step 5 (root compared by the caller)
  }

  async function checkProof(el) {
    const status = document.getElementById("proof-status");
    const computed = document.getElementById("proof-computed");
    const show = (ok, text) => {
      status.textContent = ok ? "verified" : "FAILED";
      status.className = "status " + (ok ? "ok" : "bad");
      computed.textContent = text;
    };
    try {
      if (!window.crypto || !crypto.subtle) {
        show(false, "This browser offers no SubtleCrypto here: open the console over HTTPS or loopback.");
        return;
      }
      const index = BigInt(el.dataset.index);
      const size = BigInt(el.dataset.size);
      const root = hexToBytes(el.dataset.root);
      const path = el.dataset.path ? el.dataset.path.split(",").map(hexToBytes) : [];
      const leaf = await leafHash(hexToBytes(el.dataset.leaf));
      const got = await rootFromInclusionProof(index, size, leaf, path);
      if (got === null) {
        show(false, "The audit path does not fit index " + index + " in a tree of " + size + ".");
      } else if (equal(got, root)) {
        show(true, "Computed root " + toHex(got) + " equals the signed root.");
      } else {
        show(false, "Computed root " + toHex(got) + " differs from the signed root.");
      }
    } catch (e) {
      show(false, "Check could not run: " + e.message);
    }
  }

  function tidyFilterForm(form) {
    // Leave empty filters out of the URL so links stay short and readable.
    form.addEventListener("submit", () => {
      for (const field of form.elements) {
        if ((field.tagName === "INPUT" || field.tagName === "SELECT") && field.value === "") field.disabled = true;
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const proof = document.getElementById("proof");
    if (proof) checkProof(proof);
    for (const form of document.querySelectorAll("form.filters")) tidyFilterForm(form);
  });
})();
