"""The texts of a rendered deployment: each bundle's README.txt, the private folder's notes, the key ceremony.

Pure: strings from the inventory and a bundle manifest. Commands in these
texts are the real ``liaison`` subcommands with their real options, filled in
with the inventory's names; they never contain a passphrase or a key (a
bundled-mode bundle carries its own keystore's passphrase in the file
``passphrase``, never in the text).
"""

from __future__ import annotations

from shlex import quote
from typing import TYPE_CHECKING

from keys.inventory import SiteInventory

if TYPE_CHECKING:
    from liaison.bundles.render import Bundle

__all__ = ["ceremony", "private_readme", "readme"]

_ROLE = {
    "hub": "NATS hub server (JetStream cluster member)",
    "gateway": "gateway node (the audit point)",
    "witness": "witness (co-signs the gateway's tree heads)",
    "office": "office node and its NATS leaf node server",
}


def _services(b: Bundle) -> list[str]:
    out = []
    for unit in b.units:
        name = unit["file"].removeprefix("systemd/")
        out.append(name.replace("@.", f"@{unit['instance']}.") if unit["instance"] else name)
    return out


def _keys_steps(site: SiteInventory, b: Bundle, cred: str) -> str:
    if b.role == "hub":
        return "   (no identity keys: a hub server holds only its TLS certificate)\n"
    owner, keys_dir = b.keys["owner"], f"{b.install_dir}/keys"
    if b.keys.get("mode") == "bundled":
        return (
            f"   The bundle carries the encrypted keystore of {owner} (keys/), the signed\n"
            "   directory (directory.pb) and the keystore's own passphrase (passphrase: it\n"
            f"   opens this keystore only). Move it out of the bundle:\n"
            f"     mv {b.install_dir}/passphrase {cred}\n"
        )
    if b.role == "witness":
        return (
            f"   The witness signs with the authority key of {owner}: copy that authority's own\n"
            f"   keystore (created in the directory ceremony, step 1) to {keys_dir}/, and install\n"
            f"   the signed directory as {b.install_dir}/directory.pb.\n"
        )
    return (
        f"   Identity keys are created HERE, never shipped. As root on this host:\n"
        f"     liaison keys init --office {owner} --dir {keys_dir} --passphrase-file {cred}\n"
        f"     liaison keys export-public --dir {keys_dir} --out {owner}.public.json\n"
        f"   Send {owner}.public.json to the authorities (any channel: it is public, but\n"
        "   confirm its fingerprint with them out of band). They return the signed\n"
        f"   directory: install it as {b.install_dir}/directory.pb.\n"
    )


def readme(site: SiteInventory, b: Bundle) -> str:
    inst, state, user = b.install_dir, b.state_dir, site.install.user
    cred = f"{site.install.credentials_dir}/{b.node}.passphrase"
    services = _services(b)
    ports = (
        "".join(f"     {x['address']:<24} {x['what']}\n" for x in b.listen) or "     (none: outbound only)\n"
    )
    bundled = b.keys.get("mode") == "bundled"
    passphrase = (
        ""
        if b.role == "hub"
        else f"   install -d -m 0700 {site.install.credentials_dir}\n"
        + (
            ""
            if bundled
            else f"   install -m 0600 /dev/stdin {cred}   # type or paste a new passphrase, then Ctrl-D\n"
        )
    )
    check_pass = "" if b.role == "hub" else f" --passphrase-file {cred}"
    return (
        f"Liaison bundle: {b.node}, {_ROLE[b.role]}\n"
        f"Deployment {site.deployment}; host {b.host}.\n\n"
        "Contents\n"
        f"  bundle.json        what this bundle holds (read by `liaison deploy check`)\n"
        + (f"  {b.config:<18} node config (TOML)\n" if b.config else "")
        + (f"  {b.nats_config:<18} nats-server config for this site\n" if b.nats_config else "")
        + "  tls/               CA certificate, this node's certificates and TLS keys (0600)\n"
        + (
            "  agency/            client certificates, one per agency system: MOVE each to its\n"
            "                     agency host; they do not belong on this node\n"
            if b.role == "office"
            else ""
        )
        + (
            "  keys/              this node's encrypted keystore; directory.pb the signed directory\n"
            "  passphrase         this keystore's own passphrase (0600): move it in step 4\n"
            if bundled
            else ""
        )
        + "  systemd/           unit files (hardened: dedicated user, read-only system)\n\n"
        "Install (as root)\n"
        f"1. A dedicated user:\n"
        f"   useradd --system --home-dir {site.install.state_dir} --shell /usr/sbin/nologin {user}\n"
        f"2. The bundle, read-only for the service:\n"
        f"   install -d -m 0750 -o root -g {user} {inst}\n"
        f"   cp -a ./. {inst}/ && chown -R root:{user} {inst} && chmod -R g-w,o-rwx {inst}\n"
        f"   chmod 0640 {inst}/tls/*.key\n"
        f"3. The writable state:\n"
        f"   install -d -m 0700 -o {user} -g {user} {state}\n"
        f"4. Keys and passphrase:\n{passphrase}{_keys_steps(site, b, cred)}"
        f"5. Check the bundle on this host (config, chain, keys, free ports, nats config, units):\n"
        f"   liaison deploy check {inst}{check_pass}\n"
        "6. Units:\n"
        f"   cp {inst}/systemd/*.service /etc/systemd/system/ && systemctl daemon-reload\n"
        f"   systemctl enable --now {' '.join(services)}\n"
        "7. Open these ports to the peers that need them (nothing else listens):\n"
        f"{ports}\n"
        "Operate\n"
        f"   journalctl -u {services[-1]} -f          structured JSON logs\n"
        + (
            "   liaison status / gRPC health on the node's gRPC port (operator certificate)\n"
            if b.role in ("office", "gateway")
            else ""
        )
        + (
            f"   liaison witness status --config {inst}/witness.toml    exit 1 while an alarm stands\n"
            if b.role == "witness"
            else ""
        )
    )


def private_readme(site: SiteInventory, mode: str) -> str:
    return (
        f"_private/ of deployment {site.deployment}: NEVER copy this folder to a node.\n\n"
        "  pki/          the deployment CA (ca.key, encrypted under the CA passphrase, signs every\n"
        "                certificate: keep it offline)\n"
        "  operator/     the operator's client certificate (liaison audit, status, health)\n"
        + (
            "  deployment/   the authorities' keystores and every node's (encrypted), and the\n"
            "                signed directory v1; each authority takes its own keystore\n"
            "  <owner>.passphrase\n"
            "                one per keystore owner (each authority, the gateway, each office),\n"
            "                each opens that owner's keystore only: hand each authority its own\n"
            "                and no other, then delete it here (each node's is in its bundle)\n"
            if mode == "bundled"
            else "  CEREMONY.txt  how the authorities build and sign directory v1 from the public\n"
            "                keys the nodes send them\n"
        )
    )


def ceremony(site: SiteInventory) -> str:
    inv = site.inventory
    lines = [
        f"Directory ceremony for {inv.deployment} (keys created on the nodes)",
        "",
        "1. Each authority, on its own machine:",
    ]
    for a in inv.authorities:
        lines += [
            f"   liaison keys init --office {a.id} --dir keys/{a.id} --passphrase-file PASSFILE",
            f"   liaison keys export-public --dir keys/{a.id} --out public/{a.id}.json",
        ]
    lines += [
        "2. Each node runs the key step of its README and sends public/<id>.json:",
        f"   {site.gateway.id}, " + ", ".join(o.id for o in site.offices),
        "3. One authority drafts directory v1:",
        "   liaison directory init --out draft.json --deployment "
        f"{inv.deployment} --threshold {inv.threshold} "
        + " ".join(f"--authority {a.id}=public/{a.id}.json" for a in inv.authorities),
        f"   liaison directory add-gateway --file draft.json --id {inv.gateway.id} "
        f"--country {inv.gateway.country} --name {quote(inv.gateway.name)} "
        f"--public public/{inv.gateway.id}.json",
    ]
    for o in inv.offices:
        lines.append(
            f"   liaison directory add-office --file draft.json --id {o.id} --country {o.country} "
            f"--agency {quote(o.agency)} --city {quote(o.city)} --name {quote(o.name)} "
            f"--public public/{o.id}.json"
        )
    for rule in inv.policy:
        kinds = ",".join(sorted(k.label for k in rule.kinds))
        lines.append(
            f"   liaison directory set-policy --file draft.json --sender {rule.sender} "
            f"--kinds {kinds} --recipients {quote(','.join(sorted(rule.recipients)))}"
        )
    lim = inv.limits
    lines += [
        "   liaison directory set-limits --file draft.json "
        f"--max-body-bytes {lim.max_body_bytes} --max-envelope-bytes {lim.max_envelope_bytes} "
        f"--max-clock-skew-s {lim.max_clock_skew_s} --max-ttl-s {lim.max_ttl_s} "
        f"--max-recipients {lim.max_recipients} "
        f"--minimum-suite {lim.minimum_suite.label}",
        f"4. {inv.threshold} authorities sign in turn (the file passes from one to the next):",
    ]
    src = "draft.json"
    for a in inv.authorities[: inv.threshold]:
        lines.append(
            f"   liaison directory sign --file {src} --authority {a.id} --keys keys/{a.id} "
            "--passphrase-file PASSFILE --out directory.pb"
        )
        src = "directory.pb"
    lines += [
        "   liaison directory verify --file directory.pb",
        "5. Send directory.pb to every node (install as <bundle>/directory.pb) and to the witness.",
        "",
    ]
    return "\n".join(lines)
