//! A position-keeping mirror of hickory-proto 0.26's zone-file lexer.
//!
//! hickory's `Parser` reports errors without a line or column, and its lexer
//! is crate-private. This scanner follows the same rules (blank-start lines,
//! `@`, `$DIRECTIVE`, `"quoted"` strings with `\` escapes, `( lists )`, `;`
//! comments, `\r\n` line ends) but records where every token starts and where
//! each entry (one logical line, which may span several physical lines inside
//! parentheses or quotes) begins and ends. It never decides whether a file is
//! valid: hickory does. The loader uses the entry boundaries to re-run
//! hickory's parser on prefixes of the file and so find the entry an error
//! belongs to, and the token positions to point at the offending token.

/// What a scanned token is; the variants follow hickory's `Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Whitespace at the start of a line: the owner is the previous one.
    Blank,
    /// A free-standing `@`: the current origin.
    At,
    /// A word or a quoted string outside parentheses (hickory's `CharData`).
    Word,
    /// The `(` that opens a list; its items follow as [`Kind::ListItem`].
    ListOpen,
    /// One word inside `( ... )`.
    ListItem,
    /// `$ORIGIN`, `$TTL` or `$INCLUDE` (text holds the name without `$`).
    Dollar,
    /// The end of an entry (`\n` outside parentheses and quotes).
    Eol,
}

/// One token with the 1-based line and column (in characters) it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tok {
    /// Which kind of token.
    pub kind: Kind,
    /// The text as hickory sees it (quotes removed, escapes decoded).
    pub text: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

/// One entry: the bytes `start..end` of the file, up to and including the
/// newline that ends it, and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the entry (past its `\n`, or the end of file).
    pub end: usize,
    /// 1-based line of the first character.
    pub line: usize,
    /// Tokens in order.
    pub tokens: Vec<Tok>,
    /// Where hickory's lexer is expected to fail in this entry (line, col),
    /// if it does. The scan stops there: this is then the last entry.
    pub lex_error: Option<(usize, usize)>,
}

impl Entry {
    /// Line and column of the first token that is not whitespace or the end
    /// of line, or of the entry's first character when there is none.
    pub fn position(&self) -> (usize, usize) {
        self.tokens
            .iter()
            .find(|t| !matches!(t.kind, Kind::Blank | Kind::Eol))
            .map(|t| (t.line, t.col))
            .unwrap_or((self.line, 1))
    }
}

/// A cursor over the text that tracks byte offset, line and column.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    col: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn here(&self) -> (usize, usize) {
        (self.line, self.col)
    }
}

/// Why scanning an entry stopped.
enum Stop {
    /// At a `\n`: the entry is complete and more may follow.
    Eol,
    /// At the end of the text.
    Eof,
    /// Where hickory's lexer fails.
    Error((usize, usize)),
}

/// Splits `text` into entries the way hickory's lexer would.
pub(super) fn scan(text: &str) -> Vec<Entry> {
    let mut cur = Cursor {
        text,
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut entries = Vec::new();
    while cur.pos < text.len() {
        let (start, line) = (cur.pos, cur.line);
        let mut tokens = Vec::new();
        let stop = scan_entry(&mut cur, &mut tokens);
        let lex_error = match stop {
            Stop::Error(at) => Some(at),
            Stop::Eol | Stop::Eof => None,
        };
        let end = if lex_error.is_some() {
            text.len()
        } else {
            cur.pos
        };
        entries.push(Entry {
            start,
            end,
            line,
            tokens,
            lex_error,
        });
        if !matches!(stop, Stop::Eol) {
            break;
        }
    }
    entries
}

fn tok(kind: Kind, text: String, at: (usize, usize)) -> Tok {
    Tok {
        kind,
        text,
        line: at.0,
        col: at.1,
    }
}

/// Scans one entry, mirroring the states of hickory's `Lexer::next_token`.
fn scan_entry(cur: &mut Cursor<'_>, tokens: &mut Vec<Tok>) -> Stop {
    // StartLine
    match cur.peek() {
        None => return Stop::Eof,
        Some('\r' | '\n') => return end_of_line(cur, tokens),
        Some(c) if c.is_whitespace() => {
            tokens.push(tok(Kind::Blank, String::new(), cur.here()));
            cur.bump();
        }
        Some(_) => {}
    }
    // RestOfLine
    loop {
        let at = cur.here();
        match cur.peek() {
            None => return Stop::Eof,
            Some('@') => {
                cur.bump();
                tokens.push(tok(Kind::At, "@".into(), at));
            }
            Some('(') => {
                cur.bump();
                tokens.push(tok(Kind::ListOpen, "(".into(), at));
                if let Some(stop) = list(cur, tokens, at) {
                    return stop;
                }
            }
            Some(')') => return Stop::Error(at),
            Some('$') => {
                cur.bump();
                let mut name = String::new();
                while let Some(c @ 'A'..='Z') = cur.peek() {
                    cur.bump();
                    name.push(c);
                }
                if !matches!(name.as_str(), "INCLUDE" | "ORIGIN" | "TTL") {
                    return Stop::Error(at);
                }
                tokens.push(tok(Kind::Dollar, name, at));
            }
            Some('\r' | '\n') => return end_of_line(cur, tokens),
            Some('"') => {
                cur.bump();
                match quoted(cur) {
                    Ok(s) => tokens.push(tok(Kind::Word, s, at)),
                    Err(e) => return Stop::Error(e),
                }
            }
            Some(';') => {
                while let Some(c) = cur.peek() {
                    if c == '\r' || c == '\n' {
                        break;
                    }
                    cur.bump();
                }
                if cur.peek().is_none() {
                    return Stop::Eof;
                }
                return end_of_line(cur, tokens);
            }
            Some(c) if c.is_whitespace() => {
                cur.bump();
            }
            Some(c) if !c.is_control() => {
                let mut word = String::new();
                loop {
                    match cur.peek() {
                        Some(')') => return Stop::Error(cur.here()),
                        Some(c) if c.is_whitespace() || c == ';' => break,
                        Some(c) if !c.is_control() => {
                            cur.bump();
                            word.push(c);
                        }
                        Some(_) => return Stop::Error(cur.here()),
                        None => {
                            tokens.push(tok(Kind::Word, word, at));
                            return Stop::Eof;
                        }
                    }
                }
                tokens.push(tok(Kind::Word, word, at));
            }
            Some(_) => return Stop::Error(at),
        }
    }
}

/// hickory's `EOL` state: `\r`* then `\n`; anything else is an error.
fn end_of_line(cur: &mut Cursor<'_>, tokens: &mut Vec<Tok>) -> Stop {
    let at = cur.here();
    loop {
        match cur.peek() {
            Some('\r') => {
                cur.bump();
            }
            Some('\n') => {
                cur.bump();
                tokens.push(tok(Kind::Eol, String::new(), at));
                return Stop::Eol;
            }
            Some(_) | None => return Stop::Error(cur.here()),
        }
    }
}

/// The inside of `( ... )` after the `(`. Returns `Some` when the entry ends
/// inside the list (end of text or an error), `None` after the `)`.
fn list(cur: &mut Cursor<'_>, tokens: &mut Vec<Tok>, open: (usize, usize)) -> Option<Stop> {
    loop {
        match cur.peek() {
            Some(';') => {
                while let Some(c) = cur.peek() {
                    if c == '\r' || c == '\n' {
                        break;
                    }
                    cur.bump();
                }
                if cur.peek().is_none() {
                    // hickory's comment state reaches EOF and ends quietly.
                    return Some(Stop::Eof);
                }
            }
            Some(')') => {
                cur.bump();
                return None;
            }
            Some(c) if c.is_whitespace() => {
                cur.bump();
            }
            Some(c) if !c.is_control() => {
                let at = cur.here();
                let mut word = String::new();
                loop {
                    match cur.peek() {
                        Some(c) if c.is_whitespace() || c == ')' || c == ';' => break,
                        Some(c) if !c.is_control() => {
                            cur.bump();
                            word.push(c);
                        }
                        Some(_) => return Some(Stop::Error(cur.here())),
                        None => {
                            // hickory returns the word as plain CharData here.
                            tokens.push(tok(Kind::Word, word, at));
                            return Some(Stop::Eof);
                        }
                    }
                }
                tokens.push(tok(Kind::ListItem, word, at));
            }
            Some(_) => return Some(Stop::Error(cur.here())),
            None => return Some(Stop::Error(open)),
        }
    }
}

/// A quoted string after the opening `"`; the error position is where
/// hickory's lexer gives up.
fn quoted(cur: &mut Cursor<'_>) -> Result<String, (usize, usize)> {
    let open = (cur.line, cur.col - 1);
    let mut s = String::new();
    loop {
        match cur.peek() {
            Some('"') => {
                cur.bump();
                return Ok(s);
            }
            Some('\\') => {
                let at = cur.here();
                cur.bump();
                let Some(c) = cur.peek() else { return Err(at) };
                if c.is_control() {
                    return Err(cur.here());
                }
                if c.is_numeric() {
                    let mut val: u32 = 0;
                    for shift in [16, 8, 0] {
                        let here = cur.here();
                        let d = cur.bump().ok_or(here)?.to_digit(10).ok_or(here)?;
                        val += d << shift;
                    }
                    s.push(char::from_u32(val).ok_or(at)?);
                } else {
                    cur.bump();
                    s.push(c);
                }
            }
            Some(c) => {
                cur.bump();
                s.push(c);
            }
            None => return Err(open),
        }
    }
}
