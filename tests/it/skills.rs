//! Skills over stdio with the fake CLI: built-ins, a skills directory, validation, and
//! skills as MCP prompts.

use claude_pool_tests::Scratch;
use claude_pool_tests::server::{Server, ServerOptions};
use serde_json::json;

const SECURITY: &str = "---\nname: security_review\ndescription: Review code for security issues\narguments:\n  - name: path\n    description: File or directory to review\n    required: true\n  - name: focus\n    description: What to look at first\n    default: injection\n---\nMOCK_ECHO_PROMPT Review {path} for security. Look at {focus} first.\n";

fn skill_dir() -> Scratch {
    let dir = Scratch::new("skills");
    std::fs::create_dir_all(dir.join("security")).unwrap();
    std::fs::write(dir.join("security/SKILL.md"), SECURITY).unwrap();
    dir
}

#[tokio::test]
async fn the_four_builtin_skills_are_listed_described_and_run() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let list = server.call_ok("pool_skill_list", json!({})).await;
    let names: Vec<&str> = list["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["code_review", "refactor", "summarize", "write_tests"]
    );
    let review = &list["skills"][0];
    assert_eq!(review["source"], "builtin");
    assert_eq!(review["arguments"][0]["name"], "path");
    assert_eq!(review["arguments"][0]["required"], true);
    let got = server
        .call_ok("pool_skill_get", json!({ "skill": "code_review" }))
        .await;
    let template = got["template"].as_str().unwrap();
    assert!(
        template.contains("{path}") && template.contains("{criteria}"),
        "{template}"
    );

    let r = server
        .call_ok(
            "pool_skill_run",
            json!({ "skill": "code_review", "arguments": { "path": "src/main.rs", "criteria": "bugs" } }),
        )
        .await;
    assert_eq!(r["status"], "completed");
    let expected = template
        .replace("{path}", "src/main.rs")
        .replace("{criteria}", "bugs");
    let first40: String = expected.chars().take(40).collect();
    assert_eq!(r["output"], format!("MOCK: {first40}"));
    assert!(r["spend_usd"].as_f64().unwrap() > 0.0);
    server.close().await;
}

#[tokio::test]
async fn skill_arguments_are_checked_before_anything_runs() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    server
        .expect_argument_error(
            "pool_skill_run",
            json!({ "skill": "code_review" }),
            "needs the argument \"path\"",
        )
        .await;
    server
        .expect_argument_error(
            "pool_skill_run",
            json!({ "skill": "code_review", "arguments": { "path": "x", "colour": "red" } }),
            "no argument \"colour\"",
        )
        .await;
    server
        .expect_argument_error(
            "pool_skill_run",
            json!({ "skill": "nope" }),
            "skill not found",
        )
        .await;
    server
        .expect_argument_error(
            "pool_skill_run",
            json!({ "skill": "code_review", "arguments": ["x"] }),
            "arguments",
        )
        .await;
    server
        .expect_argument_error("pool_skill_run", json!({}), "skill")
        .await;
    server
        .expect_argument_error(
            "pool_skill_get",
            json!({ "skill": "nope" }),
            "skill not found",
        )
        .await;
    assert_eq!(server.turns_started(), 0);
    server.close().await;
}

#[tokio::test]
async fn skills_load_from_a_directory_and_builtins_can_be_turned_off() {
    let dir = skill_dir();
    let server = Server::start(ServerOptions::fake(1).args(&[
        "--no-builtins",
        "--skills-dir",
        &dir.path().to_string_lossy(),
    ]))
    .await;
    let list = server.call_ok("pool_skill_list", json!({})).await;
    let skills = list["skills"].as_array().unwrap();
    assert_eq!(skills.len(), 1, "{list}");
    assert_eq!(skills[0]["name"], "security_review");
    assert!(
        skills[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("security/SKILL.md")
    );
    assert_eq!(skills[0]["arguments"][1]["default"], "injection");
    let r = server
        .call_ok(
            "pool_skill_run",
            json!({ "skill": "security_review", "arguments": { "path": "src/auth.rs" } }),
        )
        .await;
    assert_eq!(
        r["output"],
        "prompt=<<MOCK_ECHO_PROMPT Review src/auth.rs for security. Look at injection first.>>"
    );
    server.close().await;
}

#[tokio::test]
async fn every_skill_is_an_mcp_prompt() {
    let dir = skill_dir();
    let server = Server::start(
        ServerOptions::fake(1).args(&["--skills-dir", &dir.path().to_string_lossy()]),
    )
    .await;
    let prompts = server.client().list_all_prompts().await.unwrap();
    let names: Vec<String> = prompts.iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        names,
        [
            "code_review",
            "refactor",
            "security_review",
            "summarize",
            "write_tests"
        ]
    );
    let review = prompts.iter().find(|p| p.name == "code_review").unwrap();
    let args = review.arguments.as_ref().unwrap();
    assert_eq!(args[0].name, "path");
    assert_eq!(args[0].required, Some(true));
    let mut a = serde_json::Map::new();
    a.insert("path".into(), json!("lib.rs"));
    let got = server
        .client()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("code_review").with_arguments(a))
        .await
        .unwrap();
    let text = match &got.messages[0].content {
        rmcp::model::ContentBlock::Text(t) => t.text.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    assert!(
        text.contains("pool_skill_run") && text.contains("Review the code in lib.rs"),
        "{text}"
    );
    match server
        .client()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("code_review"))
        .await
    {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS);
            assert!(e.message.contains("path"), "{e:?}");
        }
        other => panic!("a prompt without its required argument was served: {other:?}"),
    }
    server.close().await;
}

#[tokio::test]
async fn a_broken_skill_file_stops_the_server_with_its_file_and_line() {
    let dir = Scratch::new("bad-skills");
    std::fs::write(
        dir.join("bad.md"),
        "---\nname: bad\narguments:\n  - name: a\n    colour: red\n---\nbody\n",
    )
    .unwrap();
    let fake = claude_pool_tests::fake_claude_bin();
    let skills = dir.path().to_string_lossy().into_owned();
    let stderr = claude_pool_tests::server::start_refused(
        &[
            "--claude-bin",
            &fake.to_string_lossy(),
            "--skills-dir",
            &skills,
        ],
        &[],
    )
    .await;
    assert!(
        stderr.contains("bad.md:5") && stderr.contains("colour"),
        "{stderr}"
    );
}
