//! The licensing step's FastAPI-DLS mode for real, once: Debian's podman,
//! a stand-in image this test builds with no network (static busybox and
//! this machine's `openssl s_server -WWW`, serving `/-/health` and
//! `/-/client-token` over HTTPS with the certificate the agent made), saved
//! as an OCI archive and baked into a plan; the agent's step loads it,
//! makes the keys with the real `openssl`, writes the unit, and the
//! unit's `ExecStart=` line, exactly as written, runs the container. Both
//! endpoints must answer through the mapped port.
//!
//! Only systemd is a stand-in ([`Systemd`]): it starts the unit's
//! `ExecStart=` in a private mount namespace where the agent's root's
//! `/etc/vgpu-bake` and `/var/lib/vgpu-bake` are bind-mounted over the
//! machine's (empty directories the test makes if missing and removes),
//! so the unit's host paths are the files the agent made.
//!
//! Needs root, podman and runc (`.ci/run` installs them). Where crun cannot
//! run containers (cgroup v1 hybrid hosts, no CAP_SYS_RESOURCE for
//! podman's default ulimits), the test says so and runs podman with a
//! `CONTAINERS_CONF` choosing runc and the current ulimits; the unit's
//! command line is the same either way.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use vgpu_firstboot::agent::host::{Host, StepOutcome};
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::facts::read_facts;
use vgpu_firstboot::runner::{CommandOutcome, CommandSpec, Runner, SystemRunner};
use vgpu_firstboot::sha256::sha256_hex;
use vgpu_plan::layout::PAYLOAD_DIR;
use vgpu_plan::plan::{PayloadFile, Plan, licensing_paths as lp};

const STANDIN_TAG: &str = "localhost/vgpu-bake-test/fastapi-dls-standin:1";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Waits up to `limit` for `child` to exit, then kills it.
fn wait_or_kill(child: &mut Child, limit: std::time::Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The NAT rules that forward `port` (CNI's port mapping), as
/// `iptables -t nat -S` lists them; empty where iptables is missing.
fn port_forward_rules(port: u16) -> Vec<String> {
    let (_, out) = sh("iptables -t nat -S 2>/dev/null");
    let want = format!("--dport {port} ");
    out.lines()
        .filter(|l| l.contains(&want) && l.contains("DNAT"))
        .map(str::to_owned)
        .collect()
}

fn sh(cmd: &str) -> (bool, String) {
    let o = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

fn must(cmd: &str) -> String {
    let (ok, out) = sh(cmd);
    assert!(ok, "`{cmd}` failed:\n{out}");
    out
}

/// The stand-in for FastAPI-DLS's `uvicorn`: refuses any other command line
/// or a missing setting, key or volume, then serves the two endpoints.
const UVICORN: &str = r#"#!/bin/sh
set -eu
want="main:app --host 0.0.0.0 --port 443 --ssl-keyfile /app/cert/webserver.key --ssl-certfile /app/cert/webserver.crt"
[ "$*" = "$want" ] || { echo "stand-in uvicorn: called with: $*" >&2; exit 2; }
for v in TZ DLS_URL DLS_PORT LEASE_EXPIRE_DAYS DATABASE DEBUG; do
  eval "[ -n \"\${$v:-}\" ]" || { echo "stand-in uvicorn: $v is not set" >&2; exit 2; }
done
[ "$DATABASE" = "sqlite:////app/database/db.sqlite" ] || { echo "DATABASE=$DATABASE" >&2; exit 2; }
for f in webserver.key webserver.crt instance.private.pem instance.public.pem; do
  [ -s "/app/cert/$f" ] || { echo "stand-in uvicorn: /app/cert/$f missing" >&2; exit 2; }
done
: >/app/database/db.sqlite
mkdir -p /srv/-
echo '{"status": "up"}' >/srv/-/health
enc() { printf '%s' "$1" | base64 | tr -d '\n=' | tr '+/' '-_'; }
printf 'standin.%s.%s.%s\n' "$(enc "$DLS_URL:$DLS_PORT")" "$(enc "$LEASE_EXPIRE_DAYS")" "$(enc "$TZ")" >/srv/-/client-token
cd /srv
exec openssl s_server -quiet -WWW -accept 443 -key /app/cert/webserver.key -cert /app/cert/webserver.crt
"#;

fn enc(s: &str) -> String {
    let out = must(&format!(
        "printf '%s' '{s}' | base64 | tr -d '\\n=' | tr '+/' '-_'"
    ));
    out.trim().to_owned()
}

/// Builds the stand-in image's root: busybox, the stand-in uvicorn, and
/// this machine's openssl with the libraries `ldd` names.
fn build_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("image-root");
    for d in [
        "bin",
        "usr/local/bin",
        "app/cert",
        "app/database",
        "srv",
        "tmp",
        "etc",
    ] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "mkdir", "base64", "tr", "printf", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let uvicorn = rootfs.join("usr/local/bin/uvicorn");
    fs::write(&uvicorn, UVICORN).unwrap();
    fs::set_permissions(&uvicorn, fs::Permissions::from_mode(0o755)).unwrap();
    let openssl = must("command -v openssl");
    let openssl = openssl.trim();
    let mut files = vec![openssl.to_owned()];
    for line in must(&format!("ldd {openssl}")).lines() {
        if let Some(p) = line.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(p.to_owned());
        }
    }
    for f in files {
        let to = rootfs.join(f.trim_start_matches('/'));
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(&f, &to).unwrap_or_else(|e| panic!("copy {f}: {e}"));
    }
    let tar = dir.join("image-root.tar");
    must(&format!(
        "tar -C {} -cf {} .",
        rootfs.display(),
        tar.display()
    ));
    let _ = sh(&format!("podman rmi -f {STANDIN_TAG}"));
    must(&format!(
        "podman import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' {} {STANDIN_TAG}",
        tar.display()
    ));
    let archive = dir.join("fastapi-dls.oci.tar");
    must(&format!(
        "podman save --format oci-archive -o {} {STANDIN_TAG}",
        archive.display()
    ));
    archive
}

/// Checks rootful podman can run a container here; if crun cannot, a
/// `CONTAINERS_CONF` with runc and the current ulimits. Panics with both
/// errors when neither runs.
fn containers_conf(dir: &Path) -> Option<PathBuf> {
    let probe = format!("podman run --rm {STANDIN_TAG} /bin/sh -c 'echo probe-ok'");
    let (ok, first) = sh(&probe);
    if ok && first.contains("probe-ok") {
        return None;
    }
    let nofile = must("ulimit -n");
    // This sandbox refuses even podman's setting of RLIMIT_NPROC to its
    // own current value; a lower one is allowed.
    let nproc = "4096";
    let conf = dir.join("containers.conf");
    fs::write(
        &conf,
        format!(
            "[containers]\ndefault_ulimits = [\"nofile={n}:{n}\", \"nproc={p}:{p}\"]\n[engine]\nruntime = \"runc\"\n",
            n = nofile.trim(),
            p = nproc
        ),
    )
    .unwrap();
    let (ok, second) = sh(&format!("CONTAINERS_CONF={} {probe}", conf.display()));
    assert!(
        ok && second.contains("probe-ok"),
        "rootful podman cannot run a container here.\nwith the defaults:\n{first}\nwith runc and the current ulimits:\n{second}"
    );
    eprintln!(
        "note: podman's default runtime cannot run containers in this sandbox ({}); using runc and the current ulimits through CONTAINERS_CONF",
        first.trim()
    );
    Some(conf)
}

/// systemd, standing in: `daemon-reload`, `is-enabled`, `is-active`, and
/// `enable --now` of a unit file the agent wrote, whose `ExecStart=` it
/// starts. Anything else fails.
struct Systemd {
    root: PathBuf,
    conf: Option<PathBuf>,
    enabled: BTreeSet<String>,
    children: Vec<Child>,
}

impl Systemd {
    fn answer(&mut self, args: &[String]) -> Result<(), String> {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        match a.as_slice() {
            ["daemon-reload"] => Ok(()),
            ["is-enabled" | "is-active", unit] => {
                if self.enabled.contains(*unit) {
                    Ok(())
                } else {
                    Err(format!("{unit} is not enabled"))
                }
            }
            ["enable", "--now", unit] => {
                let file = self.root.join("etc/systemd/system").join(unit);
                let text = fs::read_to_string(&file)
                    .map_err(|e| format!("Unit {unit} not found ({e})"))?;
                let exec = text
                    .lines()
                    .find_map(|l| l.strip_prefix("ExecStart="))
                    .ok_or("the unit has no ExecStart=")?
                    .to_owned();
                let root = self.root.display();
                let script = format!(
                    "set -e; mount --make-rprivate /; mount --bind {root}/etc/vgpu-bake /etc/vgpu-bake; mount --bind {root}/var/lib/vgpu-bake /var/lib/vgpu-bake; exec {exec}"
                );
                let mut cmd = Command::new("unshare");
                cmd.args(["-m", "sh", "-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(self.root.join("../unit.log")).unwrap());
                if let Some(c) = &self.conf {
                    cmd.env("CONTAINERS_CONF", c);
                }
                self.children.push(cmd.spawn().map_err(|e| e.to_string())?);
                self.enabled.insert((*unit).to_owned());
                Ok(())
            }
            other => Err(format!("stand-in systemctl: unexpected {other:?}")),
        }
    }
}

/// Real commands, except `systemctl` ([`Systemd`]); every command line kept.
struct Machine {
    real: SystemRunner,
    systemd: Systemd,
    lines: Vec<String>,
}

impl Runner for Machine {
    fn run(&mut self, spec: &CommandSpec) -> io::Result<CommandOutcome> {
        self.lines.push(spec.command_line());
        if spec.program != "systemctl" {
            return self.real.run(spec);
        }
        let r = self.systemd.answer(&spec.args);
        Ok(CommandOutcome {
            exit_code: Some(if r.is_ok() { 0 } else { 1 }),
            timed_out: false,
            stdout_tail: String::new(),
            stderr_tail: r.err().unwrap_or_default(),
            duration: std::time::Duration::ZERO,
        })
    }
}

/// Makes `dir` if missing; true when this test made it.
fn mountpoint(dir: &str) -> bool {
    if Path::new(dir).exists() {
        return false;
    }
    fs::create_dir_all(dir).unwrap();
    true
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn fastapi_dls_runs_under_podman_from_the_agents_unit() {
    assert!(
        sh("command -v podman").0,
        "podman is not installed: apt-get install -y podman runc busybox-static (see .ci/run)"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    must(&format!(
        "cp -a {} {}",
        workspace().join("tests/hosts/pve8-grub").display(),
        root.display()
    ));
    fs::write(root.join("etc/hostname"), "pve-test\n").unwrap();
    fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n192.0.2.10 pve-test.example.lan pve-test\n",
    )
    .unwrap();
    let archive = build_image(dir.path());
    let conf = containers_conf(dir.path());
    let _ = sh(&format!("podman rmi -f {STANDIN_TAG}"));

    let text = fs::read_to_string(workspace().join("tests/plans/licensing-fastapi.toml")).unwrap();
    let mut plan = Plan::from_toml(&text).unwrap();
    let port = free_port();
    let bytes = fs::read(&archive).unwrap();
    let image = PayloadFile {
        path: "licensing/fastapi-dls.oci.tar".into(),
        sha256: sha256_hex(&bytes).parse().unwrap(),
        size: bytes.len() as u64,
    };
    let payload = root.join(PAYLOAD_DIR).join(&image.path);
    fs::create_dir_all(payload.parent().unwrap()).unwrap();
    fs::write(&payload, &bytes).unwrap();
    // The archive podman saved passes the bake's check (an OCI archive
    // with this sha256).
    let baked = vgpu_bake::bake::licensing::bake_image(vgpu_bake::resolve::LicensingSource {
        path: image.path.clone(),
        source: archive.clone(),
        sha256: Some(image.sha256.clone()),
    })
    .unwrap();
    assert_eq!(baked.0, image);
    plan.licensing.image = Some(image.clone());
    plan.licensing.server = None;
    plan.licensing.port = Some(port);
    let tag = format!(
        "localhost/vgpu-bake/fastapi-dls:{}",
        &image.sha256.as_str()[..12]
    );
    let _ = sh(&format!("podman rmi -f {tag}"));

    fs::create_dir_all(root.join("etc/vgpu-bake")).unwrap();
    fs::create_dir_all(root.join("var/lib/vgpu-bake")).unwrap();
    let made: Vec<&str> = ["/etc/vgpu-bake", "/var/lib/vgpu-bake"]
        .into_iter()
        .filter(|d| mountpoint(d))
        .collect();
    let facts = read_facts(&root).unwrap();
    let mut machine = Machine {
        real: SystemRunner::quiet(),
        systemd: Systemd {
            root: root.clone(),
            conf: conf.clone(),
            enabled: BTreeSet::new(),
            children: Vec::new(),
        },
        lines: Vec::new(),
    };
    let result = {
        let mut host = Host::new(&root, &mut machine, &plan, &facts);
        let first = steps::licensing::run(&mut host);
        let log = host.log.clone();
        let second = first
            .as_ref()
            .ok()
            .map(|_| steps::licensing::run(&mut host).map_err(|e| e.reason));
        (first.map_err(|e| e.reason), second, log)
    };
    let lines = machine.lines.clone();
    let unit_log = fs::read_to_string(dir.path().join("unit.log")).unwrap_or_default();

    // Both endpoints through the mapped port, from outside the agent.
    let crt = root.join(lp::CERT_DIR).join("webserver.crt");
    let get = |path: &str| {
        sh(&format!(
            "wget -q -O - --timeout=5 --tries=1 --ca-certificate={} https://127.0.0.1:{port}{path}",
            crt.display()
        ))
    };
    let health = get("/-/health");
    let token = get("/-/client-token");

    // Clean up before asserting, as systemd stops the unit: its ExecStop,
    // then its main process (`podman run --rm`) removes the container and
    // its port forward and exits. The stop runs in the unit's mount
    // namespace, where the container's network namespace is mounted: run
    // from outside it, podman cannot join that namespace, and CNI's DNAT
    // rule for the port stays behind, sending any later connection to
    // 127.0.0.1:<port> to a container that is gone ("No route to host" in
    // other tests that happen to get that port).
    let conf_env = conf
        .as_ref()
        .map(|c| format!("CONTAINERS_CONF={} ", c.display()))
        .unwrap_or_default();
    for mut c in machine.systemd.children.drain(..) {
        let _ = sh(&format!(
            "{conf_env}nsenter -t {} -m podman stop --ignore --time 2 {}",
            c.id(),
            lp::CONTAINER
        ));
        wait_or_kill(&mut c, std::time::Duration::from_secs(30));
    }
    let _ = sh(&format!(
        "{conf_env}podman rm -f --ignore {}",
        lp::CONTAINER
    ));
    let leftover = port_forward_rules(port);
    let _ = sh(&format!("podman rmi -f {tag} {STANDIN_TAG}"));
    for d in made {
        let _ = fs::remove_dir(d);
    }

    let (first, second, log) = result;
    assert_eq!(
        first,
        Ok(StepOutcome::Done),
        "commands:\n{}\nlog:\n{}\nunit stderr:\n{unit_log}",
        lines.join("\n"),
        log.join("\n")
    );
    assert_eq!(second, Some(Ok(StepOutcome::Done)), "{}", lines.join("\n"));
    assert!(health.0, "{}", health.1);
    assert!(health.1.contains("\"status\": \"up\""), "{}", health.1);
    assert!(token.0, "{}", token.1);
    let want = format!(
        "standin.{}.{}.{}",
        enc(&format!("192.0.2.10:{port}")),
        enc("30"),
        enc("Europe/Berlin")
    );
    assert_eq!(token.1.trim(), want);

    // The image was loaded once; the second run found everything in place.
    assert_eq!(
        lines.iter().filter(|l| l.contains(" load -i ")).count(),
        1,
        "{}",
        lines.join("\n")
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("openssl req"))
            .count(),
        1
    );
    let mode = |rel: &str| fs::metadata(root.join(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(lp::TOKEN), 0o600);
    assert_eq!(
        fs::read_to_string(root.join(lp::TOKEN)).unwrap().trim(),
        want
    );
    assert_eq!(mode(&format!("{}/webserver.key", lp::CERT_DIR)), 0o600);
    assert_eq!(
        mode(&format!("{}/instance.private.pem", lp::CERT_DIR)),
        0o600
    );
    assert_eq!(mode(lp::GUEST_LINUX), 0o700);
    let linux = fs::read_to_string(root.join(lp::GUEST_LINUX)).unwrap();
    assert!(
        linux.contains(&format!("'https://192.0.2.10:{port}/-/client-token'")),
        "{linux}"
    );
    assert!(linux.contains(fs::read_to_string(&crt).unwrap().trim()));
    let unit = fs::read_to_string(root.join(lp::UNIT)).unwrap();
    assert!(unit.contains(&format!("-p {port}:443")), "{unit}");
    assert!(unit.contains(&format!(" {tag} uvicorn main:app")), "{unit}");
    // Stopping the unit left no port forward behind.
    assert!(
        leftover.is_empty(),
        "port {port} is still forwarded after the unit was stopped:\n{}",
        leftover.join("\n")
    );
}
