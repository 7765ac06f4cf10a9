use super::*;

fn config(backends: &str, policies: &str) -> Result<Config, String> {
    let text = format!(
        "[volume]\nname = \"v\"\nid = \"6f0b3c2e-3f4a-4d55-9a4e-0f7d4c1b2a10\"\ndata_shards = 4\nparity_shards = 2\nchunk_size = \"1MiB\"\ncache_size = \"256MiB\"\nstate_dir = \"/var/lib/v\"\n{backends}\n{policies}"
    );
    let cfg: Config = toml::from_str(&text).map_err(|e| e.to_string())?;
    cfg.validate()?;
    Ok(cfg)
}

const CLOUDS: &str = r#"
[[backend]]
name = "aws"
url = "s3://bucket/prefix"
domain = "aws-us-east-1"
storage_class = "STANDARD_IA"
[[backend]]
name = "gcs"
url = "gs://bucket/prefix"
[[backend]]
name = "azure"
url = "az://container/prefix"
[[backend]]
name = "disk1"
url = "file:///mnt/d1"
[[backend]]
name = "disk2"
url = "file:///mnt/d2"
[[backend]]
name = "disk3"
url = "file:///mnt/d3"
"#;

/// The example of README's "Placement policies" section.
const EXAMPLE: &str = r#"
[[policy]]
name = "text"
match = { extensions = ["txt"] }
layout = "replicate:2"
backends = ["aws", "gcs"]
storage_class = { gcs = "NEARLINE" }

[[policy]]
name = "photos"
match = { extensions = ["jpg"] }
layout = "replicate:2"
backends = ["azure", "aws"]

[[policy]]
name = "videos"
match = { extensions = ["mp4"] }
layout = "replicate:3"
backends = ["gcs", "azure", "aws"]

[[policy]]
name = "default"
layout = "ec:4+2"
"#;

fn facts(path: &str, size: u64) -> FileFacts<'_> {
    FileFacts {
        path,
        size,
        uid: 1000,
    }
}

#[test]
fn the_example_places_each_kind_where_it_says() {
    let cfg = config(CLOUDS, EXAMPLE).unwrap();
    let set = PolicySet::compile(&cfg).unwrap();
    let id = ChunkId([7; 32]);
    let text = set.choose(&facts("notes/a.TXT", 10));
    assert_eq!(text.name, "text");
    assert_eq!(text.describe_layout(), "2 copies");
    let p = text.place(&id);
    assert_eq!(p.slots, vec![0, 1]);
    assert_eq!(
        p.classes,
        vec![StorageClass::S3StandardIa, StorageClass::GcsNearline]
    );
    assert_eq!(set.choose(&facts("x.jpg", 1)).place(&id).slots, vec![2, 0]);
    assert_eq!(
        set.choose(&facts("v/x.mp4", 1)).place(&id).slots,
        vec![1, 2, 0]
    );
    let other = set.choose(&facts("x.iso", 1));
    assert_eq!(
        (other.name.as_str(), other.describe_layout()),
        ("default", "ec:4+2".into())
    );
    assert_eq!(other.place(&id).slots.len(), 6);
}

#[test]
fn without_rules_the_volume_layout_spreads_over_every_backend() {
    let cfg = config(CLOUDS, "").unwrap();
    let set = PolicySet::compile(&cfg).unwrap();
    assert_eq!(set.rules.len(), 1);
    let r = set.default_rule();
    assert_eq!(
        (r.name.as_str(), r.layout),
        (DEFAULT_RULE, Layout { k: 4, m: 2 })
    );
    // The placement volumes always had: consecutive slots from one derived from the id.
    let id = ChunkId([
        0, 3, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        9, 9,
    ]);
    assert_eq!(r.place(&id).slots, vec![3, 4, 5, 0, 1, 2]);
}

#[test]
fn paths_sizes_and_owners_match_like_gitignore() {
    let cfg = config(
        CLOUDS,
        r#"
[[policy]]
name = "docs"
match = { paths = ["docs/**", "/top.iso"] }
backends = ["disk1", "disk2", "disk3", "aws", "gcs", "azure"]
[[policy]]
name = "big"
match = { min_size = "1GiB", owner = 1000 }
layout = "ec:2+1"
[[policy]]
name = "logs"
match = { paths = ["*.log", "cache/"] }
layout = "replicate:2"
[[policy]]
name = "default"
"#,
    )
    .unwrap();
    let set = PolicySet::compile(&cfg).unwrap();
    let name =
        |p: &str, size: u64, uid: u32| set.choose(&FileFacts { path: p, size, uid }).name.clone();
    assert_eq!(name("docs/a/b.txt", 1, 0), "docs");
    assert_eq!(name("x/docs/a.txt", 1, 0), "default");
    assert_eq!(name("top.iso", 1, 0), "docs");
    assert_eq!(name("sub/top.iso", 1, 0), "default");
    assert_eq!(name("a/b/c.log", 1, 0), "logs");
    assert_eq!(name("a/cache/x/y", 1, 0), "logs");
    assert_eq!(name("film.mkv", 2 << 30, 1000), "big");
    assert_eq!(name("film.mkv", 2 << 30, 1001), "default");
    assert_eq!(name("film.mkv", 1 << 20, 1000), "default");
    // A file being written: the size rule is not settled below 1 GiB.
    let f = |size| FileFacts {
        path: "film.mkv",
        size,
        uid: 1000,
    };
    assert!(set.settled(&f(1 << 20)).is_none());
    assert_eq!(set.settled(&f(1 << 30)).unwrap().name, "big");
    assert_eq!(
        set.settled(&FileFacts {
            path: "docs/x",
            size: 0,
            uid: 1000
        })
        .unwrap()
        .name,
        "docs"
    );
    assert_eq!(
        set.settled(&FileFacts {
            path: "a.mkv",
            size: 0,
            uid: 5
        })
        .unwrap()
        .name,
        "default"
    );
}

#[test]
fn a_domain_holding_too_many_shards_is_refused_in_one_line() {
    let e = config(
        r#"
[[backend]]
name = "a1"
url = "file:///a1"
domain = "rack-a"
[[backend]]
name = "a2"
url = "file:///a2"
domain = "rack-a"
[[backend]]
name = "a3"
url = "file:///a3"
domain = "rack-a"
[[backend]]
name = "b"
url = "file:///b"
"#,
        "",
    )
    .unwrap_err();
    assert!(!e.contains('\n'), "{e}");
    assert!(
        e.contains("rack-a") && e.contains("ec:4+2") && e.contains("add backends"),
        "{e}"
    );
}

#[test]
fn archive_classes_need_k_instant_shards_or_an_explicit_yes() {
    let backends = r#"
[[backend]]
name = "aws"
url = "s3://b/p"
[[backend]]
name = "gcs"
url = "gs://b/p"
"#;
    let rule = |extra: &str| {
        format!(
            "[[policy]]\nname = \"cold\"\nlayout = \"replicate:2\"\nbackends = [\"aws\", \"gcs\"]\nstorage_class = {{ aws = \"DEEP_ARCHIVE\", gcs = \"ARCHIVE\" }}\n{extra}"
        )
    };
    // GCS ARCHIVE is read directly: one instant copy is enough for k = 1.
    config(backends, &rule("")).unwrap();
    let backends = format!("{backends}[[backend]]\nname = \"azure\"\nurl = \"az://c/p\"\n");
    let all_cold = "[[policy]]\nname = \"cold\"\nlayout = \"ec:2+2\"\nbackends = [\"aws\", \"azure\"]\nstorage_class = { aws = \"DEEP_ARCHIVE\", azure = \"Archive\" }\n";
    let e = config(&backends, all_cold).unwrap_err();
    assert!(
        e.contains("allow_archive_only") && e.contains("aws (DEEP_ARCHIVE)"),
        "{e}"
    );
    config(&backends, &format!("{all_cold}allow_archive_only = true\n")).unwrap();
}

#[test]
fn mistakes_in_rules_are_named() {
    let cases = [
        ("[[policy]]\nname = \"a\"\nlayout = \"raid5\"\n", "not `ec:K+M`"),
        ("[[policy]]\nname = \"a\"\nbackends = [\"nope\"]\n", "no backend is named \"nope\""),
        ("[[policy]]\nname = \"a\"\nmatch = { extensions = [\"txt\"] }\n", "the last rule is the default"),
        ("[[policy]]\nname = \"a\"\n[[policy]]\nname = \"b\"\n", "rules after it would never apply"),
        ("[[policy]]\nname = \"a\"\nmatch = { extensions = [\"txt\"] }\n[[policy]]\nname = \"a\"\n", "used twice"),
        ("[[policy]]\nname = \"a\"\nstorage_class = { gcs = \"GLACIER\" }\n", "not one of gcp's"),
        ("[[policy]]\nname = \"a\"\nbackends = [\"aws\"]\nstorage_class = { gcs = \"NEARLINE\" }\nlayout = \"replicate:1\"\n", "does not use"),
        ("[[policy]]\nname = \"a\"\nmatch = { extensions = [\"*.jpg\"] }\n[[policy]]\nname = \"d\"\n", "is not an extension"),
        ("[[policy]]\nname = \"a\"\nmatch = { owner = \"no-such-user-here\" }\n[[policy]]\nname = \"d\"\n", "no user is named"),
    ];
    for (policy, want) in cases {
        let e = config(CLOUDS, policy).unwrap_err();
        assert!(e.contains(want), "{policy}\n→ {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn layouts_parse() {
    assert_eq!(parse_layout("ec:4+2"), Ok(Layout { k: 4, m: 2 }));
    assert_eq!(parse_layout(" replicate:3 "), Ok(Layout { k: 1, m: 2 }));
    assert!(parse_layout("replicate:0").is_err());
    assert!(parse_layout("ec:0+2").is_err());
    assert_eq!(describe_layout(Layout { k: 1, m: 2 }), "3 copies");
}

#[test]
fn the_readme_policy_example_is_valid_and_places_as_it_says() {
    let readme = include_str!("../../../README.md");
    let section = &readme[readme.find("### Placement policies").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let cfg = config("", example).unwrap();
    let set = PolicySet::compile(&cfg).unwrap();
    let names: Vec<&str> = set.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["text", "photos", "videos", "default"]);
    let id = ChunkId([1; 32]);
    let at = |p: &str| set.choose(&facts(p, 1)).place(&id);
    // aws is slot 0, gcs 1, azure 2.
    let text = at("a/b.txt");
    assert_eq!(text.slots, vec![0, 1]);
    assert_eq!(
        text.classes,
        vec![StorageClass::S3StandardIa, StorageClass::GcsNearline]
    );
    assert_eq!(at("p.JPG").slots, vec![2, 0]);
    assert_eq!(at("v.mp4").slots, vec![1, 2, 0]);
    let other = set.choose(&facts("x.bin", 1));
    assert_eq!(other.describe_layout(), "ec:4+2");
    // Six shards over three providers, two each: any one of them can go.
    assert_eq!(crate::policy::check::survival(other, &set), "any 1 backend");
}
