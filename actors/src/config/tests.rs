//! The configuration: children's environment, retries, the permission ceiling.

use super::*;

#[test]
fn children_never_inherit_the_claude_code_parent_markers() {
    let cfg = PoolConfig {
        inherit_env: false,
        env: vec![
            ("CLAUDECODE".into(), "1".into()),
            ("CLAUDE_CODE_ENTRYPOINT".into(), "cli".into()),
            ("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()),
        ],
        ..PoolConfig::default()
    };
    let spec = cfg.spawn_spec(&cfg.defaults, None, None);
    let names: Vec<_> = spec
        .env
        .iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "ANTHROPIC_BASE_URL".to_owned(),
            MAX_RETRIES_ENV.to_owned(),
            DEPTH_ENV.to_owned()
        ]
    );
}

#[test]
fn the_clis_own_retries_are_two_unless_the_operator_says_otherwise() {
    let retries = |env: Vec<(OsString, OsString)>| {
        let cfg = PoolConfig {
            inherit_env: false,
            env,
            ..PoolConfig::default()
        };
        cfg.spawn_spec(&cfg.defaults, None, None)
            .env
            .into_iter()
            .filter(|(k, _)| k == MAX_RETRIES_ENV)
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(retries(Vec::new()), ["2"]);
    assert_eq!(
        retries(vec![(MAX_RETRIES_ENV.into(), "7".into())]),
        ["7"],
        "an operator's own setting wins"
    );
}

#[test]
fn the_permission_ceiling_is_never_below_the_servers_own_mode() {
    use PermissionMode::*;
    // (server's --permission-mode, --max-permission-mode, asked, allowed)
    let table = [
        (Some(Plan), AcceptEdits, AcceptEdits, true),
        (Some(Plan), AcceptEdits, Default, true),
        (Some(Plan), AcceptEdits, Auto, false),
        (Some(Plan), AcceptEdits, BypassPermissions, false),
        (Some(AcceptEdits), Plan, AcceptEdits, true),
        (Some(AcceptEdits), Plan, Default, true),
        (Some(AcceptEdits), Plan, Auto, false),
        (Some(Plan), Plan, Default, false),
        (Some(Plan), BypassPermissions, BypassPermissions, true),
        (Some(BypassPermissions), Plan, BypassPermissions, true),
        (None, Plan, Default, true),
        (None, Plan, AcceptEdits, false),
    ];
    for (own, max, asked, allowed) in table {
        let cfg = PoolConfig {
            defaults: ProcSettings {
                permission_mode: own,
                ..ProcSettings::default()
            },
            max_permission_mode: max,
            ..PoolConfig::default()
        };
        let r = cfg.check_permission_mode("permission_mode", asked);
        assert_eq!(r.is_ok(), allowed, "{own:?} max {max}: {asked} -> {r:?}");
        if let Err(e) = r {
            let ceiling = cfg.permission_ceiling();
            assert!(e.contains(&format!("ceiling \"{ceiling}\"")), "{e}");
        }
    }
    assert_eq!(PoolConfig::default().permission_ceiling(), AcceptEdits);
}

#[test]
fn the_system_prompt_is_appended_never_replacing_claude_codes_own() {
    let cfg = PoolConfig {
        append_system_prompt: Some("be brief".into()),
        ..PoolConfig::default()
    };
    let args = cfg.spawn_spec(&cfg.defaults, None, None).args;
    let i = args
        .iter()
        .position(|a| a == "--append-system-prompt")
        .expect("flag present");
    assert_eq!(args[i + 1], "be brief");
    assert!(!args.iter().any(|a| a == "--system-prompt"));
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--permission-mode" && w[1] == "plan")
    );
}

#[test]
fn a_projects_store_depends_on_its_path_not_on_how_it_was_named() {
    let state = Path::new("/state");
    let a = StoreLocation::project_store_in(state, Path::new("/nonexistent/proj/app"));
    let b = StoreLocation::project_store_in(state, Path::new("/nonexistent/other/app"));
    assert_ne!(a, b, "two directories named alike have two stores");
    assert!(a.starts_with("/state/projects/"), "{}", a.display());
    assert_eq!(a.file_name().and_then(|n| n.to_str()), Some("pool.db"));
    let dir = a
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        dir.starts_with("app-") && dir.len() == "app-".len() + 16,
        "{dir}"
    );
    assert_eq!(
        a,
        StoreLocation::project_store_in(state, Path::new("/nonexistent/proj/app"))
    );
}
