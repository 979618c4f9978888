//! The root `Makefile.toml` (cargo-make) mirrors the xtask commands: every task runs
//! `cargo xtask <its name> ${@}`, and every command but `help` has its task. Tests only.

use super::table::COMMANDS;

/// What is wrong with a `Makefile.toml`'s tasks: a task that is not `cargo xtask <COMMAND>
/// ${@}` for an existing command, or a command without its task.
fn problems(text: &str) -> Vec<String> {
    let doc: toml::Table = match toml::from_str(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("Makefile.toml is not TOML: {e}")],
    };
    let mut out = Vec::new();
    let tasks = doc
        .get("tasks")
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    for (name, task) in &tasks {
        if !COMMANDS.iter().any(|c| c.name == name) || name == "help" {
            out.push(format!("task `{name}` is not an xtask command"));
            continue;
        }
        let command = task.get("command").and_then(toml::Value::as_str);
        let args: Vec<&str> = task
            .get("args")
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
            .unwrap_or_default();
        if command != Some("cargo") || args != ["xtask", name.as_str(), "${@}"] {
            out.push(format!(
                "task `{name}` must be command = \"cargo\", args = [\"xtask\", \"{name}\", \"${{@}}\"] (has {command:?}, {args:?})"
            ));
        }
    }
    for c in COMMANDS.iter().filter(|c| c.name != "help") {
        if !tasks.contains_key(c.name) {
            out.push(format!("xtask command `{}` has no task", c.name));
        }
    }
    let config = doc.get("config");
    let flag = |k: &str| config.and_then(|c| c.get(k)).and_then(toml::Value::as_bool);
    if flag("skip_core_tasks") != Some(true) || flag("default_to_workspace") != Some(false) {
        out.push(
            "[config] must set skip_core_tasks = true and default_to_workspace = false".into(),
        );
    }
    out
}

#[test]
fn every_task_is_an_xtask_command_and_every_command_has_its_task() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Makefile.toml");
    let text = std::fs::read_to_string(path).expect("Makefile.toml at the workspace root");
    assert_eq!(problems(&text), Vec::<String>::new());
}

#[test]
fn a_wrong_task_is_refused() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../Makefile.toml");
    let real = std::fs::read_to_string(path).unwrap();
    // A task for a command that does not exist.
    let extra = format!(
        "{real}\n[tasks.biuld]\ncommand = \"cargo\"\nargs = [\"xtask\", \"biuld\", \"${{@}}\"]\n"
    );
    assert_eq!(problems(&extra), ["task `biuld` is not an xtask command"]);
    // A task that runs another command, or drops the arguments.
    let swapped = real.replace(
        "args = [\"xtask\", \"lint\", \"${@}\"]",
        "args = [\"xtask\", \"build\", \"${@}\"]",
    );
    assert_eq!(problems(&swapped).len(), 1, "{:?}", problems(&swapped));
    let dropped = real.replace(
        "args = [\"xtask\", \"test\", \"${@}\"]",
        "args = [\"xtask\", \"test\"]",
    );
    assert!(problems(&dropped)[0].starts_with("task `test` must be"));
    // A command without its task.
    let start = real.find("[tasks.bench]").unwrap();
    let end = real[start..].find("\n\n").unwrap() + start;
    let missing = format!("{}{}", &real[..start], &real[end..]);
    assert_eq!(problems(&missing), ["xtask command `bench` has no task"]);
    assert!(
        problems("[tasks")
            .first()
            .is_some_and(|p| p.contains("not TOML"))
    );
}
