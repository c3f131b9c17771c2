//! SQL text from a dump, cut into statements the way psql reads it.
//!
//! A dump's database-level entries (settings, comment, grants) are applied one statement at
//! a time, under the restored database's name. Cutting at `;` and a line break is not enough:
//! a comment may hold both inside its quotes. This lexer knows string literals (`'…'`,
//! `E'…'` with backslash escapes), quoted identifiers, dollar quotes and comments, and drops
//! psql meta-commands (`\connect`), which are lines of their own between statements.

/// The statements in `sql`, each without its closing `;`, trimmed; meta-command lines and
/// comments between statements are left out.
#[must_use]
pub fn statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let at_statement_start = b[start..i].iter().all(u8::is_ascii_whitespace);
        match b[i] {
            b'\\' if at_statement_start && line_start(b, i) => {
                i = skip_line(b, i);
                start = i;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = skip_line(b, i);
                if at_statement_start {
                    start = i;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'\'' => {
                let escapes =
                    i > 0 && matches!(b[i - 1], b'E' | b'e') && (i < 2 || !is_ident_byte(b[i - 2]));
                i = skip_quoted(b, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(b, i, b'"', false),
            b'$' if i == 0 || !is_ident_byte(b[i - 1]) => i = skip_dollar(sql, i),
            b';' => {
                push(&mut out, &sql[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    push(&mut out, &sql[start..]);
    out
}

fn push(out: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if !s.is_empty() {
        out.push(s.to_string());
    }
}

fn line_start(b: &[u8], i: usize) -> bool {
    b[..i]
        .iter()
        .rev()
        .take_while(|&&c| c != b'\n')
        .all(u8::is_ascii_whitespace)
}

fn skip_line(b: &[u8], i: usize) -> usize {
    memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n + 1)
}

fn skip_block_comment(b: &[u8], mut i: usize) -> usize {
    // block comments nest in PostgreSQL
    let mut depth = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Past the closing quote (a doubled quote is part of the text).
fn skip_quoted(b: &[u8], mut i: usize, q: u8, backslash_escapes: bool) -> usize {
    i += 1;
    while i < b.len() {
        if backslash_escapes && b[i] == b'\\' {
            i += 2;
        } else if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// Past a `$tag$ … $tag$` string; a `$` that opens none (a parameter `$1`) is one byte.
fn skip_dollar(sql: &str, i: usize) -> usize {
    let b = sql.as_bytes();
    let mut j = i + 1;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
        j += 1;
    }
    if b.get(j) != Some(&b'$') || b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        return i + 1;
    }
    let tag = &sql[i..=j];
    sql[j + 1..]
        .find(tag)
        .map_or(b.len(), |n| j + 1 + n + tag.len())
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// `stmt` with its first `DATABASE <name>` outside quotes naming `to` instead, when the name
/// is `from` (quoted as an identifier, or bare). Statements about other databases, and text
/// inside literals, are left alone.
#[must_use]
pub fn rename_database(stmt: &str, from: &str, to: &str) -> String {
    let quoted = super::compare::ident(from);
    let b = stmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'E' | b'e');
                i = skip_quoted(b, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(b, i, b'"', false),
            _ if b[i..].starts_with(b"DATABASE ") && (i == 0 || !is_ident_byte(b[i - 1])) => {
                let name_at = i + "DATABASE ".len();
                let rest = &stmt[name_at..];
                let end = if rest.starts_with('"') {
                    skip_quoted(rest.as_bytes(), 0, b'"', false)
                } else {
                    rest.bytes().take_while(|&c| is_ident_byte(c)).count()
                };
                let name = &rest[..end];
                if name == quoted || name == from {
                    return format!(
                        "{}{}{}",
                        &stmt[..name_at],
                        super::compare::ident(to),
                        &rest[end..]
                    );
                }
                return stmt.to_string();
            }
            _ => i += 1,
        }
    }
    stmt.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_respect_quotes_comments_and_meta_commands() {
        let sql = "\\connect \"x\"\n-- a comment; with a semicolon\n\
                   COMMENT ON DATABASE \"a;b\" IS 'Billing DB;\n-- do not drop\n\\ keep';\n\
                   ALTER DATABASE x SET search_path TO \"Select\", public;\n\
                   COMMENT ON DATABASE x IS E'it''s \\'quoted\\';\\n';\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ select 1; $body$ LANGUAGE sql;\n\
                   /* block /* nested; */ still; */ GRANT CONNECT ON DATABASE x TO PUBLIC";
        assert_eq!(
            statements(sql),
            [
                "COMMENT ON DATABASE \"a;b\" IS 'Billing DB;\n-- do not drop\n\\ keep'",
                "ALTER DATABASE x SET search_path TO \"Select\", public",
                "COMMENT ON DATABASE x IS E'it''s \\'quoted\\';\\n'",
                "CREATE FUNCTION f() RETURNS int AS $body$ select 1; $body$ LANGUAGE sql",
                "/* block /* nested; */ still; */ GRANT CONNECT ON DATABASE x TO PUBLIC",
            ]
        );
        assert!(statements("\n  \n-- only a comment\n").is_empty());
    }

    #[test]
    fn only_the_database_named_is_renamed_and_never_inside_literals() {
        let to = "Café \"new\"";
        assert_eq!(
            rename_database("ALTER DATABASE app SET x TO 1", "app", to),
            "ALTER DATABASE \"Café \"\"new\"\"\" SET x TO 1"
        );
        assert_eq!(
            rename_database("ALTER DATABASE app2 SET x TO 1", "app", to),
            "ALTER DATABASE app2 SET x TO 1"
        );
        assert_eq!(
            rename_database(
                "COMMENT ON DATABASE \"-dash DB\" IS 'see DATABASE \"-dash DB\" docs'",
                "-dash DB",
                "copy"
            ),
            "COMMENT ON DATABASE \"copy\" IS 'see DATABASE \"-dash DB\" docs'"
        );
        assert_eq!(
            rename_database("ALTER ROLE r IN DATABASE \"app\" SET y TO 2", "app", "b"),
            "ALTER ROLE r IN DATABASE \"b\" SET y TO 2"
        );
    }
}
