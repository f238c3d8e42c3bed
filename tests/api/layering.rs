//! The layers hold without anyone remembering them: `src/core` (the product, pure) never
//! reaches the wire, the file system or the environment, and no layer reaches into one that
//! sits on top of it (core ← state ← api ← cli).

use std::path::{Path, PathBuf};

use crate::helpers::paths_below;

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    paths_below(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

/// The code of a file with comments and string literals blanked out, so a doc comment that
/// names `std::fs` is no violation, while `use std::{fs, io}` still is.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            'r' if chars.peek() == Some(&'#') => {
                // A raw string r#"…"#: skip to its end, keeping line breaks.
                chars.next();
                if chars.peek() == Some(&'"') {
                    chars.next();
                    out.push(' ');
                    let mut last = ' ';
                    for c in chars.by_ref() {
                        if c == '\n' {
                            out.push('\n');
                        }
                        if last == '"' && c == '#' {
                            break;
                        }
                        last = c;
                    }
                } else {
                    out.push_str("r#");
                }
            }
            '\'' => {
                // A char literal ('"', '\'') is skipped; a lifetime ('a) is kept as it is.
                let rest: Vec<char> = chars.clone().take(3).collect();
                match rest.as_slice() {
                    ['\\', _, '\''] => {
                        chars.nth(2);
                    }
                    [_, '\'', ..] => {
                        chars.nth(1);
                    }
                    _ => out.push(c),
                }
                out.push(' ');
            }
            '"' => {
                out.push(' ');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// What a file of a layer uses, as `crate`-relative or external paths: `use` trees are
/// flattened (`use std::{fs, io::Write}` gives `std::fs` and `std::io::Write`), and every
/// path written inline in the code (`std::env::var(..)`) counts too.
fn used_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    // Inline paths: every token that looks like a::b.
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
        {
            i += 1;
        }
        if i > start {
            let word: String = bytes[start..i].iter().collect();
            if word.contains("::") {
                paths.push(word.trim_start_matches("::").to_owned());
            }
        } else {
            i += 1;
        }
    }
    // `use` trees with braces.
    for statement in code.split(';') {
        // `use` as a word, not the end of one (`single_use {`, `Reused =>`).
        let Some(at) = statement.match_indices("use ").map(|(i, _)| i).find(|&i| {
            !statement[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        }) else {
            continue;
        };
        // One space between words (`fs as f`), none around punctuation (`std::{fs, io}`).
        let mut tree = statement[at + 4..]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for punct in ["{", "}", ",", "::"] {
            tree = tree
                .replace(&format!(" {punct}"), punct)
                .replace(&format!("{punct} "), punct);
        }
        flatten("", tree.trim(), &mut paths);
    }
    paths
}

fn flatten(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let Some(open) = tree.find('{') else {
        for part in tree.split(',') {
            let part = part.split(" as ").next().unwrap_or(part);
            if !part.is_empty() {
                out.push(format!("{prefix}{part}"));
            }
        }
        return;
    };
    let head = &tree[..open];
    let Some(close) = tree.rfind('}') else {
        return;
    };
    let inner = &tree[open + 1..close];
    // Split the inner list at top-level commas only.
    let mut depth = 0;
    let mut start = 0;
    let inner_chars: Vec<(usize, char)> = inner.char_indices().collect();
    for &(idx, c) in &inner_chars {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                flatten(&format!("{prefix}{head}"), &inner[start..idx], out);
                start = idx + 1;
            }
            _ => {}
        }
    }
    flatten(&format!("{prefix}{head}"), &inner[start..], out);
}

/// Paths in `layer` that start with any of `forbidden`, as `file: path` lines.
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let files = rust_files(&root);
    assert!(!files.is_empty(), "no Rust files under {}", root.display());
    let mut found = Vec::new();
    for file in files {
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for path in used_paths(&code) {
            let hit = forbidden
                .iter()
                .any(|f| path == *f || path.starts_with(&format!("{f}::")));
            if hit {
                found.push(format!("{}: {path}", file.display()));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_core_never_touches_the_wire_files_or_the_environment() {
    let found = violations(
        "core",
        &[
            "tonic",
            "prost",
            "prost_types",
            "tonic_health",
            "tonic_reflection",
            "axum",
            "tokio",
            "crate::proto",
            "std::fs",
            "std::env",
            "std::net",
            "std::process",
            "crate::state",
            "crate::api",
            "crate::cli",
            "crate::telemetry",
        ],
    );
    assert!(
        found.is_empty(),
        "src/core must stay pure:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_state_layer_does_not_reach_up_into_the_wire_or_the_commands() {
    let found = violations(
        "state",
        &[
            "tonic",
            "prost",
            "prost_types",
            "axum",
            "crate::proto",
            "crate::api",
            "crate::cli",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_wire_does_not_reach_into_the_commands() {
    let found = violations("api", &["crate::cli"]);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_checker_sees_imports_in_every_form_it_must_refuse() {
    let code = code_only(concat!(
        "use std::{fs as files, io::Write as _};\n",
        "use crate::proto::{self, X};\n",
        "// std::env in a comment\n",
        "let s = \"std::env\"; let q = '\"'; let r = r#\"std::env \" \"#;\n",
        "fn f<'a>() { std::env::var(\"A\"); tonic::Status::ok(\"\"); }\n",
    ));
    let paths = used_paths(&code);
    for want in [
        "std::fs",
        "crate::proto::self",
        "std::env::var",
        "tonic::Status::ok",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }
    assert_eq!(
        paths.iter().filter(|p| p.starts_with("std::env")).count(),
        1,
        "comments and strings must not count: {paths:?}"
    );
}
