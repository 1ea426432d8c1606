//! A tiny RFC 4180 CSV reader: comma-separated, optional `"` quoting with
//! `""` escapes, commas and line breaks allowed inside quotes, LF or CRLF
//! line ends. Enough for the committed data files; no dependency needed.

/// One record and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based line.
    pub line: usize,
    pub fields: Vec<String>,
}

/// A syntax error and the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line.
    pub line: usize,
    pub reason: String,
}

/// Splits `text` into its header record and the data records; an empty
/// file is an error at line 1.
pub fn parse_with_header(text: &str) -> Result<(Record, Vec<Record>), CsvError> {
    let mut records = parse(text)?;
    if records.is_empty() {
        return Err(CsvError {
            line: 1,
            reason: "the file is empty (it needs a header row)".into(),
        });
    }
    let header = records.remove(0);
    Ok((header, records))
}

/// Splits `text` into records. Completely empty lines are skipped; a
/// leading UTF-8 byte order mark is ignored.
pub fn parse(text: &str) -> Result<Vec<Record>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        // Whether the current field was quoted (so an empty one still counts).
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    read_quoted(&mut chars, &mut field, &mut line, start)?;
                    match chars.peek() {
                        None | Some(',') | Some('\n') => {}
                        Some('\r') => {}
                        Some(c) => {
                            return Err(CsvError {
                                line,
                                reason: format!(
                                    "unexpected {c:?} after a closing quote (quote the whole field and double inner quotes)"
                                ),
                            });
                        }
                    }
                }
                Some('"') => {
                    return Err(CsvError {
                        line,
                        reason: "a quote inside an unquoted field (quote the whole field and double inner quotes)".into(),
                    });
                }
                Some(c) if quoted => {
                    return Err(CsvError {
                        line,
                        reason: format!("unexpected {c:?} after a closing quote"),
                    });
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
        if !blank {
            records.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(records)
}

/// Reads a quoted field's content after its opening quote, up to and
/// including the closing quote.
fn read_quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    field: &mut String,
    line: &mut usize,
    start: usize,
) -> Result<(), CsvError> {
    loop {
        match chars.next() {
            None => {
                return Err(CsvError {
                    line: start,
                    reason: "a quoted field is never closed".into(),
                });
            }
            Some('"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            Some('"') => return Ok(()),
            Some(c) => {
                if c == '\n' {
                    *line += 1;
                }
                field.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<Vec<String>> {
        parse(text)
            .expect("valid csv")
            .into_iter()
            .map(|r| r.fields)
            .collect()
    }

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(
            fields("a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n"),
            vec![vec!["a", "b", "c"], vec!["1", "x, y", "say \"hi\""]]
        );
    }

    #[test]
    fn empty_fields_crlf_and_no_final_newline() {
        assert_eq!(
            fields("a,\"\",\r\n,x"),
            vec![vec!["a", "", ""], vec!["", "x"]]
        );
    }

    #[test]
    fn newline_inside_quotes_keeps_line_numbers() {
        let recs = parse("h\n\"two\nlines\"\nlast\n").expect("valid csv");
        assert_eq!(recs[1].fields, vec!["two\nlines"]);
        assert_eq!(recs[1].line, 2);
        assert_eq!(recs[2].line, 4);
    }

    #[test]
    fn blank_lines_and_bom_are_skipped() {
        assert_eq!(fields("\u{feff}a\n\nb\n\n"), vec![vec!["a"], vec!["b"]]);
        assert_eq!(fields("\"\"\n"), vec![vec![""]]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("a\n\"open\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("never closed"), "{}", e.reason);
        let e = parse("a\nb\"c\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse("\"a\"b\n").unwrap_err();
        assert!(e.reason.contains("after a closing quote"), "{}", e.reason);
    }
}
