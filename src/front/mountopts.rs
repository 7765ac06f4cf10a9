//! Mount options (`cloudraid mount -o`, fstab's fourth column) and the command
//! line mount(8) gives a mount helper (`mount.cloudraid SOURCE DIR [-sfnv] [-o OPTS]`).
//!
//! Pure parsing: the FUSE adapter turns [`MountOpts`] into kernel options, the
//! daemon applies cloudraid's own ones.

use crate::config::Size;
use std::time::Duration;

/// How long a mount waits for enough backends to answer by default.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Mount options understood by `cloudraid mount -o` and the mount helper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOpts {
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    /// Show every file as owned by this user / group (like ntfs-3g or rclone's
    /// --uid): for a volume written by one machine's users and mounted on another.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Kernel flags passed through (nosuid, noexec, noatime...).
    pub flags: Vec<String>,
    /// cloudraid's own: overrides of the config for this mount.
    pub cache_size: Option<Size>,
    pub readahead_chunks: Option<usize>,
    /// How long to keep retrying while fewer than k backends answer (0: fail at once).
    pub startup_timeout: Option<Duration>,
    /// Take the write lease over from another holder (`takeover`).
    pub takeover: bool,
    /// Options dropped because only mount(8) or fstab use them.
    pub dropped: Vec<String>,
    /// Unknown options ignored under `-s` (sloppy).
    pub ignored: Vec<String>,
}

const KNOWN: &str = "ro, rw, takeover, allow_other, allow_root, default_permissions, uid=N, gid=N, nosuid, nodev, noexec, noatime, sync, async, dirsync, cache_size=SIZE, readahead=N, startup_timeout=DURATION";

impl MountOpts {
    /// Parses comma-separated option lists. Options that only mean something to
    /// mount(8) or fstab (`defaults`, `_netdev`, `nofail`, `auto`, `noauto`,
    /// `user`, `x-*`...) are dropped. An unknown option is an error, unless
    /// `sloppy`, when it is ignored.
    pub fn parse(list: &[String], sloppy: bool) -> Result<MountOpts, String> {
        let mut o = MountOpts::default();
        for opt in list
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt, None),
            };
            let need = || need_value(key, value);
            let id = || -> Result<u32, String> {
                let v = need()?;
                v.parse()
                    .map_err(|_| format!("mount option {key}={v}: expected a numeric id"))
            };
            match key {
                "ro" => o.read_only = true,
                "rw" => o.read_only = false,
                "allow_other" => o.allow_other = true,
                "allow_root" => o.allow_root = true,
                "takeover" => o.takeover = true,
                // Always on: the kernel checks permissions from the attributes.
                "default_permissions" => {}
                "uid" => o.uid = Some(id()?),
                "gid" => o.gid = Some(id()?),
                "cache_size" => o.cache_size = Some(Size::parse(need()?)?),
                "readahead" => {
                    let v = need()?;
                    o.readahead_chunks = Some(v.parse().map_err(|_| {
                        format!("mount option readahead={v}: expected a number of chunks")
                    })?)
                }
                "startup_timeout" => {
                    let v = need()?;
                    o.startup_timeout = Some(humantime::parse_duration(v).map_err(|e| {
                        format!("mount option startup_timeout={v}: {e} (e.g. 30s, 2min, 0)")
                    })?)
                }
                "defaults" | "_netdev" | "nofail" | "auto" | "noauto" | "user" | "users"
                | "nouser" | "owner" | "group" | "comment" | "loop" => {
                    o.dropped.push(opt.to_string())
                }
                x if x.starts_with("x-") => o.dropped.push(opt.to_string()),
                "nosuid" | "suid" | "nodev" | "dev" | "noexec" | "exec" | "noatime" | "atime"
                | "sync" | "async" | "dirsync" | "relatime" | "norelatime" | "strictatime"
                | "lazytime" | "nodiratime"
                    if value.is_none() =>
                {
                    o.flags.push(opt.to_string())
                }
                _ if sloppy => o.ignored.push(opt.to_string()),
                _ => {
                    return Err(format!(
                        "unknown mount option {opt:?}: cloudraid takes {KNOWN} (and ignores fstab-only options such as _netdev, nofail, noauto, x-*)"
                    ))
                }
            }
        }
        Ok(o)
    }

    /// The options again as one list, without the dropped and ignored ones: what
    /// the helper hands to the mount daemon.
    pub fn to_list(&self) -> String {
        let mut v: Vec<String> = vec![if self.read_only { "ro" } else { "rw" }.into()];
        if self.allow_other {
            v.push("allow_other".into());
        }
        if self.allow_root {
            v.push("allow_root".into());
        }
        if self.takeover {
            v.push("takeover".into());
        }
        if let Some(u) = self.uid {
            v.push(format!("uid={u}"));
        }
        if let Some(g) = self.gid {
            v.push(format!("gid={g}"));
        }
        v.extend(self.flags.iter().cloned());
        if let Some(c) = self.cache_size {
            v.push(format!("cache_size={c}"));
        }
        if let Some(r) = self.readahead_chunks {
            v.push(format!("readahead={r}"));
        }
        if let Some(t) = self.startup_timeout {
            v.push(format!("startup_timeout={}", humantime::format_duration(t)));
        }
        v.join(",")
    }

    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT)
    }
}

fn need_value<'a>(key: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"))
}

/// What mount(8) asked of the helper.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HelperArgs {
    /// The config file (fstab's first column).
    pub source: String,
    pub mountpoint: String,
    pub options: Vec<String>,
    /// `-f`: do everything but mount (mount --fake).
    pub fake: bool,
    /// `-n`: do not write /etc/mtab (cloudraid never does).
    pub no_mtab: bool,
    pub verbose: bool,
    /// `-s`: ignore unknown mount options.
    pub sloppy: bool,
    /// `-t`: the type mount(8) was given (cloudraid or fuse.cloudraid).
    pub fstype: Option<String>,
}

pub const HELPER_USAGE: &str = "usage: mount.cloudraid CONFIG MOUNTPOINT [-sfnv] [-o OPTIONS]\n  (run by mount(8) for `mount -t cloudraid` and fstab lines of type cloudraid or fuse.cloudraid)";

/// Parses a helper's arguments (without the program name), as mount(8) passes
/// them: `SOURCE DIR [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`, flags possibly
/// grouped (`-fv`) and before, between or after the two paths.
pub fn parse_helper_args(args: &[String]) -> Result<HelperArgs, String> {
    let mut h = HelperArgs::default();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            paths.extend(args[i..].iter().cloned());
            break;
        }
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            paths.push(a.clone());
            continue;
        };
        if flags == "h" || flags == "-help" {
            return Err(HELPER_USAGE.into());
        }
        let chars: Vec<char> = flags.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            match c {
                'f' => h.fake = true,
                'n' => h.no_mtab = true,
                'v' => h.verbose = true,
                's' => h.sloppy = true,
                'o' | 't' | 'N' => {
                    // The value is the rest of this word, or the next word.
                    let rest: String = chars[j..].iter().collect();
                    let value = if !rest.is_empty() {
                        j = chars.len();
                        rest
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("option -{c} needs a value\n{HELPER_USAGE}"));
                    };
                    match c {
                        'o' => h.options.push(value),
                        't' => h.fstype = Some(value),
                        _ => {
                            return Err(format!(
                                "-N {value}: mounting in another mount namespace is not supported"
                            ))
                        }
                    }
                }
                other => return Err(format!("unknown flag -{other}\n{HELPER_USAGE}")),
            }
        }
    }
    if let Some(t) = &h.fstype {
        if t != "cloudraid" && t != "fuse.cloudraid" {
            return Err(format!(
                "type {t} is not cloudraid: this helper mounts only types cloudraid and fuse.cloudraid"
            ));
        }
    }
    match paths.as_slice() {
        [src, dir] => {
            h.source = src.clone();
            h.mountpoint = dir.clone();
            Ok(h)
        }
        _ => Err(format!(
            "expected a config file and a mountpoint, got {} path(s)\n{HELPER_USAGE}",
            paths.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(s: &str) -> Result<MountOpts, String> {
        MountOpts::parse(&[s.to_string()], false)
    }

    fn args(s: &str) -> Result<HelperArgs, String> {
        parse_helper_args(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn fstab_only_options_are_dropped() {
        let o = opts("defaults,_netdev,nofail,auto,noauto,user,users,x-systemd.automount,x-systemd.idle-timeout=60,comment=backup").unwrap();
        assert_eq!(o.dropped.len(), 10);
        assert_eq!(o.to_list(), "rw");
    }

    #[test]
    fn kernel_and_own_options_are_kept() {
        let o = opts("ro,allow_other,default_permissions,uid=1000,gid=100,nosuid,nodev,noatime,cache_size=512MiB,readahead=8,startup_timeout=2min").unwrap();
        assert!(o.read_only && o.allow_other);
        assert_eq!((o.uid, o.gid), (Some(1000), Some(100)));
        assert_eq!(o.flags, vec!["nosuid", "nodev", "noatime"]);
        assert_eq!(o.cache_size, Some(Size(512 << 20)));
        assert_eq!(o.readahead_chunks, Some(8));
        assert_eq!(o.startup_timeout(), Duration::from_secs(120));
        // What the helper hands on parses back to the same options.
        let again = opts(&o.to_list()).unwrap();
        let mut kept = o.clone();
        kept.dropped.clear();
        kept.ignored.clear();
        assert_eq!(again, kept);
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        let e = opts("rw,compress=yes").unwrap_err();
        assert!(
            e.contains("\"compress=yes\"") && e.contains("allow_other"),
            "{e}"
        );
        assert!(opts("uid=alice").unwrap_err().contains("numeric id"));
        assert!(opts("cache_size=lots")
            .unwrap_err()
            .contains("invalid size"));
        assert!(opts("uid").unwrap_err().contains("needs a value"));
        assert!(opts("startup_timeout=soon").is_err());
        // Sloppy: unknown options are ignored, bad values of known ones are still errors.
        let o = MountOpts::parse(&["rw,compress=yes,nonsense".into()], true).unwrap();
        assert_eq!(o.ignored, vec!["compress=yes", "nonsense"]);
        assert!(MountOpts::parse(&["uid=alice".into()], true).is_err());
    }

    #[test]
    fn helper_arguments_as_mount_passes_them() {
        let h = args("/etc/cloudraid/b.toml /mnt/b -o rw,nofail -t fuse.cloudraid").unwrap();
        assert_eq!(h.source, "/etc/cloudraid/b.toml");
        assert_eq!(h.mountpoint, "/mnt/b");
        assert_eq!(h.options, vec!["rw,nofail"]);
        assert_eq!(h.fstype.as_deref(), Some("fuse.cloudraid"));
        assert!(!h.fake && !h.verbose);

        let h = args("-fnvs /c.toml /m -oro").unwrap();
        assert!(h.fake && h.no_mtab && h.verbose && h.sloppy);
        assert_eq!(h.options, vec!["ro"]);
        let h = args("/c.toml -v /m -o a -o b").unwrap();
        assert_eq!(
            (h.source.as_str(), h.mountpoint.as_str()),
            ("/c.toml", "/m")
        );
        assert_eq!(h.options, vec!["a", "b"]);
    }

    #[test]
    fn helper_refuses_what_it_cannot_do() {
        assert!(args("/c.toml").unwrap_err().contains("got 1 path"));
        assert!(args("/c.toml /m -o").unwrap_err().contains("needs a value"));
        assert!(args("/c.toml /m -x")
            .unwrap_err()
            .contains("unknown flag -x"));
        assert!(args("/c.toml /m -t ext4")
            .unwrap_err()
            .contains("not cloudraid"));
        assert!(args("/c.toml /m -N 1234")
            .unwrap_err()
            .contains("namespace"));
        assert!(args("-h").unwrap_err().contains("usage"));
    }
}
