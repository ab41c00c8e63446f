//! Containers and pods from cgroup paths, for every runtime's naming scheme, under cgroup
//! v1 (one path per controller) and v2 (`0::/path`).
//!
//! | runtime | cgroup driver systemd | cgroupfs |
//! |---|---|---|
//! | docker | `/system.slice/docker-<id>.scope` | `/docker/<id>` |
//! | containerd (k8s) | `…/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope` | `/kubepods/burstable/pod<uid>/<id>` |
//! | cri-o | `…/crio-<id>.scope` | `/kubepods/…/pod<uid>/crio-<id>` |
//! | podman | `/machine.slice/libpod-<id>.scope` (rootless: under `user@UID.service`) | `/libpod_parent/libpod-<id>` |
//! | containerd (nerdctl) | `nerdctl-<id>.scope` | `/<namespace>/<id>` |

/// Who runs a container, and the pod it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    /// 64 hex digits.
    pub id: String,
    /// docker, containerd, cri-o, podman, or kubepods when a bare id under kubepods does
    /// not say which CRI made it.
    pub runtime: &'static str,
    /// Kubernetes pod uid (with dashes), when under kubepods.
    pub pod_uid: Option<String>,
    /// guaranteed, burstable or besteffort, when under kubepods.
    pub qos: Option<&'static str>,
    /// The cgroup path up to and including the container's own directory.
    pub cgroup: String,
}

const PREFIXES: &[(&str, &str)] = &[
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
];

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container a cgroup path belongs to, if any: the innermost path component that is a
/// container id (bare or with a runtime's prefix and `.scope` suffix). Components below it
/// (podman's `/container`, systemd inside a container) belong to the same container.
pub fn container_of_path(path: &str) -> Option<ContainerRef> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate().rev() {
        let name = part.strip_suffix(".scope").unwrap_or(part);
        if name.starts_with("crio-conmon-") {
            // cri-o's monitor process sits beside the container, not in it.
            return None;
        }
        let (id, mut runtime) = match PREFIXES.iter().find(|(p, _)| name.starts_with(p)) {
            Some((p, rt)) => (&name[p.len()..], *rt),
            None => (name, ""),
        };
        if !is_container_id(id) {
            continue;
        }
        let above = &parts[..i];
        let kube = above.iter().any(|p| p.starts_with("kubepods"));
        if runtime.is_empty() {
            runtime = if kube {
                "kubepods"
            } else if above.iter().any(|p| *p == "docker") {
                "docker"
            } else if above.iter().any(|p| p.starts_with("libpod")) {
                "podman"
            } else {
                "containerd"
            };
        }
        let (pod_uid, qos) = if kube { pod_of(above) } else { (None, None) };
        return Some(ContainerRef {
            id: id.to_ascii_lowercase(),
            runtime,
            pod_uid,
            qos,
            cgroup: format!("/{}", parts[..=i].join("/")),
        });
    }
    None
}

/// Pod uid and QoS class from the kubepods components above a container.
fn pod_of(above: &[&str]) -> (Option<String>, Option<&'static str>) {
    let mut uid = None;
    let mut qos = Some("guaranteed");
    for p in above {
        let p = p.strip_suffix(".slice").unwrap_or(p);
        if p.contains("burstable") {
            qos = Some("burstable");
        } else if p.contains("besteffort") {
            qos = Some("besteffort");
        }
        // systemd: kubepods-burstable-pod<uid_with_underscores>; cgroupfs: pod<uid>.
        let u = match p.rfind("-pod") {
            Some(i) => Some(&p[i + 4..]),
            None => p.strip_prefix("pod"),
        };
        if let Some(u) = u.filter(|u| !u.is_empty()) {
            uid = Some(u.replace('_', "-"));
        }
    }
    (uid, qos)
}

/// /proc/PID/cgroup as (controllers, path); v2's line has empty controllers.
pub fn parse_proc_cgroup(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _hier = it.next()?;
            Some((it.next()?, it.next()?))
        })
        .collect()
}

/// The container of a process, from its /proc/PID/cgroup.
pub fn container_of_process(text: &str) -> Option<ContainerRef> {
    parse_proc_cgroup(text)
        .into_iter()
        .find_map(|(_, path)| container_of_path(path))
}

/// v1 `memory.oom_control`'s `oom_kill N` or v2 `memory.events`' `oom_kill N`.
pub fn oom_kills(text: &str) -> Option<u64> {
    let mut found = None;
    super::for_each_key_value(text, |k, v| {
        if k == "oom_kill" {
            found = Some(v);
        }
    });
    found
}

/// A memory limit file: `max` (v2) or a huge page-rounded number (v1) means none.
pub fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    // v1 reports "no limit" as LONG_MAX rounded down to a page.
    (v < (1 << 60)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899";

    #[test]
    fn every_runtime() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), "docker", None),
            (format!("/docker/{ID}"), "docker", None),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{ID}.scope"),
                "containerd",
                Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
            ),
            (
                format!("/kubepods/besteffort/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/{ID}"),
                "kubepods",
                Some("1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"),
            ),
            (
                format!("/kubepods.slice/kubepods-pod0a.slice/crio-{ID}.scope"),
                "cri-o",
                Some("0a"),
            ),
            (format!("/machine.slice/libpod-{ID}.scope/container"), "podman", None),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                "podman",
                None,
            ),
            (format!("/libpod_parent/libpod-{ID}"), "podman", None),
            (format!("/default/{ID}"), "containerd", None),
        ];
        for (path, runtime, pod) in cases {
            let c = container_of_path(&path).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(c.id, ID, "{path}");
            assert_eq!(c.runtime, runtime, "{path}");
            assert_eq!(c.pod_uid.as_deref(), pod, "{path}");
        }
        let c = container_of_path(&format!("/machine.slice/libpod-{ID}.scope/container")).unwrap();
        assert_eq!(c.cgroup, format!("/machine.slice/libpod-{ID}.scope"));
    }

    #[test]
    fn not_containers() {
        for path in [
            "/",
            "/user.slice/user-0.slice/session-3.scope",
            "/system.slice/docker.service",
            "/process_api/1c6ed570341bfa3ce87b4820ed4fdde6",
            &format!("/kubepods.slice/kubepods-pod0a.slice/crio-conmon-{ID}.scope"),
        ] {
            assert_eq!(container_of_path(path), None, "{path}");
        }
    }

    #[test]
    fn qos_classes() {
        let c = container_of_path(&format!("/kubepods/pod0a/{ID}")).unwrap();
        assert_eq!(c.qos, Some("guaranteed"));
        let c = container_of_path(&format!("/kubepods/burstable/pod0a/{ID}")).unwrap();
        assert_eq!(c.qos, Some("burstable"));
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(536870912));
        assert_eq!(
            oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            Some(1)
        );
    }
}
