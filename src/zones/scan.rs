//! Where a zone file's entries and tokens are, so errors get a line and
//! column.
//!
//! hickory-proto 0.26's `Parser` reports errors without a position and keeps
//! its lexer private, so floe finds entries and tokens itself, by the
//! master-file syntax of RFC 1035 section 5.1:
//!
//! - An entry ends at a line end (`\n`, or `\r\n`) outside parentheses and
//!   quoted strings. `( ... )` continue it over line ends; they do not nest.
//! - Whitespace separates tokens; `;` starts a comment up to the line end.
//! - `"` and `(` only mean something at the start of a token (and `(` only
//!   outside parentheses); elsewhere they are ordinary characters.
//! - `"` starts a character string that runs to the next unescaped `"`, over
//!   line ends too. In it `\DDD` is the character with decimal code DDD and
//!   `\X` is X; a `\` must be followed by a visible character.
//! - Outside quotes a word runs to whitespace, `;` or `)`; `\X` keeps X in
//!   the word (the escape itself is left for the name parser).
//! - An entry that starts with whitespace has no owner (the previous one's
//!   applies); a lone `@` is the origin; a word that starts with `$` outside
//!   parentheses is a directive, `$ORIGIN`, `$TTL` or `$INCLUDE`.
//! - Control characters other than whitespace only occur in quoted strings.
//!
//! Whether the entries make valid records is hickory's business. Where its
//! reading differs from these rules, `tests.rs` has a differential test that
//! fails: see `agrees_with_hickory` there.

/// What a scanned token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Whitespace starting an entry: its owner is the previous entry's.
    Blank,
    /// A free-standing `@` outside parentheses: the current origin.
    At,
    /// A word or a quoted string outside parentheses.
    Word,
    /// A `(`; the words up to its `)` are [`Kind::ListItem`]s.
    ListOpen,
    /// A word or a quoted string inside parentheses.
    ListItem,
    /// `$ORIGIN`, `$TTL` or `$INCLUDE` (the text is the name without `$`).
    Dollar,
}

/// One token and the 1-based line and column (in characters) it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tok {
    /// Which kind of token.
    pub kind: Kind,
    /// A word as written; a quoted string without its quotes and escapes.
    pub text: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

/// One entry: the bytes `start..end` of the file and its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Byte offset of the first character.
    pub start: usize,
    /// Byte offset just past the entry's line end (or the end of the file).
    pub end: usize,
    /// 1-based line of the first character.
    pub line: usize,
    /// Tokens in order, up to a lexical error if there is one.
    pub tokens: Vec<Tok>,
    /// Where the entry breaks the rules above (line, column), if it does.
    /// Scanning stops there: such an entry is the last and runs to the end
    /// of the file.
    pub lex_error: Option<(usize, usize)>,
}

impl Entry {
    /// Line and column of the first token that is not the leading blank, or
    /// of the entry's first character when there is none.
    pub fn position(&self) -> (usize, usize) {
        self.tokens
            .iter()
            .find(|t| t.kind != Kind::Blank)
            .map_or((self.line, 1), |t| (t.line, t.col))
    }
}

/// Splits `text` into entries.
pub(super) fn scan(text: &str) -> Vec<Entry> {
    let mut s = Scanner {
        text,
        pos: 0,
        line: 1,
        col: 1,
    };
    let mut entries = Vec::new();
    while s.pos < text.len() {
        let (start, line) = (s.pos, s.line);
        let mut tokens = Vec::new();
        let lex_error = s.entry(&mut tokens).err();
        let end = if lex_error.is_some() {
            text.len()
        } else {
            s.pos
        };
        entries.push(Entry {
            start,
            end,
            line,
            tokens,
            lex_error,
        });
        if lex_error.is_some() {
            break;
        }
    }
    entries
}

/// The text being scanned and a position in it.
struct Scanner<'a> {
    text: &'a str,
    /// Byte offset.
    pos: usize,
    /// 1-based line and column (in characters) of `pos`.
    line: usize,
    col: usize,
}

/// A lexical error: the line and column it is at.
type Error = (usize, usize);

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        (self.line, self.col) = if c == '\n' {
            (self.line + 1, 1)
        } else {
            (self.line, self.col + 1)
        };
        Some(c)
    }

    fn at(&self) -> (usize, usize) {
        (self.line, self.col)
    }

    /// Reads one entry's tokens into `out`, up to and past its line end.
    fn entry(&mut self, out: &mut Vec<Tok>) -> Result<(), Error> {
        let token = |kind, text, (line, col)| Tok {
            kind,
            text,
            line,
            col,
        };
        if self
            .peek()
            .is_some_and(|c| c.is_whitespace() && !is_line_end(c))
        {
            out.push(token(Kind::Blank, String::new(), self.at()));
        }
        // Where the open `(` is, inside parentheses.
        let mut open = None;
        loop {
            let at = self.at();
            let Some(c) = self.peek() else {
                return open.map_or(Ok(()), Err);
            };
            match c {
                _ if is_line_end(c) && open.is_none() => return self.line_end(),
                ';' => {
                    while self.peek().is_some_and(|c| !is_line_end(c)) {
                        self.bump();
                    }
                }
                _ if c.is_whitespace() => {
                    self.bump();
                }
                '(' if open.is_none() => {
                    self.bump();
                    open = Some(at);
                    out.push(token(Kind::ListOpen, "(".into(), at));
                }
                ')' if open.is_some() => {
                    self.bump();
                    open = None;
                }
                ')' => return Err(at),
                _ if c.is_control() => return Err(at),
                _ => {
                    let text = if c == '"' {
                        self.quoted()?
                    } else {
                        self.word()
                    };
                    let (kind, text) = match (open, c) {
                        (Some(_), _) => (Kind::ListItem, text),
                        (None, '@') if text == "@" => (Kind::At, text),
                        (None, '$') => match &text[1..] {
                            name @ ("ORIGIN" | "TTL" | "INCLUDE") => (Kind::Dollar, name.into()),
                            _ => return Err(at),
                        },
                        _ => (Kind::Word, text),
                    };
                    out.push(token(kind, text, at));
                }
            }
        }
    }

    /// `\r`s then `\n`: the end of an entry.
    fn line_end(&mut self) -> Result<(), Error> {
        let at = self.at();
        while self.peek() == Some('\r') {
            self.bump();
        }
        match self.bump() {
            Some('\n') => Ok(()),
            _ => Err(at),
        }
    }

    /// An unquoted word, as written.
    fn word(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c.is_control() || c == ';' || c == ')' {
                break;
            }
            self.bump();
            if c == '\\' && self.peek().is_some_and(|c| !c.is_control()) {
                self.bump();
            }
        }
        self.text[start..self.pos].to_string()
    }

    /// A quoted string, from its opening `"`, with the escapes decoded.
    fn quoted(&mut self) -> Result<String, Error> {
        let open = self.at();
        self.bump();
        let mut s = String::new();
        loop {
            let at = self.at();
            match self.bump() {
                None => return Err(open),
                Some('"') => return Ok(s),
                Some('\\') => match self.bump() {
                    Some(d) if d.is_ascii_digit() => {
                        let mut code = 0;
                        for d in [Some(d), self.bump(), self.bump()] {
                            code = code * 10 + d.and_then(|d| d.to_digit(10)).ok_or(at)?;
                        }
                        s.push(char::from_u32(code).ok_or(at)?);
                    }
                    Some(c) if !c.is_control() => s.push(c),
                    _ => return Err(at),
                },
                Some(c) => s.push(c),
            }
        }
    }
}

/// `\n` or `\r`: a line end outside parentheses and quotes.
fn is_line_end(c: char) -> bool {
    c == '\n' || c == '\r'
}
