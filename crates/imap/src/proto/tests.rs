//! Known-answer tables, round trips, RFC example exchanges and malformed input for the protocol
//! layer.

use super::*;

fn parse(line: &str) -> Command {
    parse_command(line.as_bytes(), ParseOptions::default())
        .unwrap_or_else(|e| panic!("{line:?} failed to parse: {e:?}"))
}

fn parse_err(line: &[u8]) -> ParseFailure {
    match parse_command(line, ParseOptions::default()) {
        Ok(c) => panic!(
            "{:?} parsed unexpectedly as {c:?}",
            String::from_utf8_lossy(line)
        ),
        Err(e) => e,
    }
}

fn tag(s: &str) -> Tag {
    Tag::try_from(s).unwrap()
}

fn set(ranges: &[(u32, u32)]) -> SequenceSet {
    SequenceSet::Ranges(
        ranges
            .iter()
            .map(|&(a, b)| (SeqNumber::Value(a), SeqNumber::Value(b)))
            .collect(),
    )
}

fn mailbox(s: &str) -> Mailbox {
    Mailbox::new(s.into())
}

#[test]
fn known_answers_simple_commands() {
    use CommandBody as C;
    let table: Vec<(&str, CommandBody)> = vec![
        ("a001 CAPABILITY\r\n", C::Capability),
        ("a002 noop\r\n", C::Noop),
        ("A023 LOGOUT\r\n", C::Logout),
        ("a STARTTLS\r\n", C::StartTls),
        ("a IDLE\r\n", C::Idle),
        ("a CHECK\r\n", C::Check),
        ("a CLOSE\r\n", C::Close),
        ("a UNSELECT\r\n", C::Unselect),
        ("a EXPUNGE\r\n", C::Expunge),
        ("a NAMESPACE\r\n", C::Namespace),
        ("a UNAUTHENTICATE\r\n", C::Unauthenticate),
        (
            "a LOGIN SMITH SESAME\r\n",
            C::Login {
                username: "SMITH".into(),
                password: Secret::new(b"SESAME".to_vec()),
            },
        ),
        (
            "a LOGIN \"fred@example.com\" {6+}\r\nfoo\"ba\r\n",
            C::Login {
                username: "fred@example.com".into(),
                password: Secret::new(b"foo\"ba".to_vec()),
            },
        ),
        (
            "a ENABLE CONDSTORE qresync\r\n",
            C::Enable(vec!["CONDSTORE".into(), "QRESYNC".into()]),
        ),
        (
            "A142 SELECT inbox\r\n",
            C::Select {
                mailbox: mailbox("INBOX"),
                read_only: false,
                params: SelectParams::default(),
            },
        ),
        (
            "A932 EXAMINE blurdybloop\r\n",
            C::Select {
                mailbox: mailbox("blurdybloop"),
                read_only: true,
                params: SelectParams::default(),
            },
        ),
        (
            "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
            C::Select {
                mailbox: mailbox("INBOX"),
                read_only: false,
                params: SelectParams {
                    condstore: false,
                    qresync: Some(QresyncParams {
                        uid_validity: 67890007,
                        modseq: 20050715194045000,
                        known_uids: Some(set(&[(41, 41), (43, 211), (214, 541)])),
                        seq_match: None,
                    }),
                },
            },
        ),
        (
            "B01 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000 4964,7496,8992)))\r\n",
            C::Select {
                mailbox: mailbox("INBOX"),
                read_only: false,
                params: SelectParams {
                    condstore: false,
                    qresync: Some(QresyncParams {
                        uid_validity: 67890007,
                        modseq: 90060115194045000,
                        known_uids: Some(set(&[(1, 29997)])),
                        seq_match: Some((
                            set(&[(5000, 5000), (7500, 7500), (9000, 9000)]),
                            set(&[(4964, 4964), (7496, 7496), (8992, 8992)]),
                        )),
                    }),
                },
            },
        ),
        (
            "a SELECT x (CONDSTORE)\r\n",
            C::Select {
                mailbox: mailbox("x"),
                read_only: false,
                params: SelectParams {
                    condstore: true,
                    qresync: None,
                },
            },
        ),
        (
            "A003 CREATE owatagusiam/\r\n",
            C::Create {
                mailbox: mailbox("owatagusiam/"),
                special_use: vec![],
            },
        ),
        (
            "t1 CREATE MySpecialTrash (USE (\\Trash))\r\n",
            C::Create {
                mailbox: mailbox("MySpecialTrash"),
                special_use: vec!["\\Trash".into()],
            },
        ),
        (
            "A683 RENAME blurdybloop sarasoop\r\n",
            C::Rename {
                from: mailbox("blurdybloop"),
                to: mailbox("sarasoop"),
            },
        ),
        (
            "A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
            C::Status {
                mailbox: mailbox("blurdybloop"),
                items: vec![StatusItem::UidNext, StatusItem::Messages],
            },
        ),
        ("A202 EXPUNGE\r\n", C::Expunge),
        (
            "a UID EXPUNGE 3000:3002\r\n",
            C::UidExpunge(set(&[(3000, 3002)])),
        ),
        (
            "a ID (\"name\" \"sodr\" \"version\" NIL)\r\n",
            C::Id(Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), None),
            ])),
        ),
        ("a ID NIL\r\n", C::Id(None)),
        (
            "a GETQUOTAROOT INBOX\r\n",
            C::GetQuotaRoot(mailbox("INBOX")),
        ),
        ("a COMPRESS DEFLATE\r\n", C::Compress("DEFLATE".into())),
        (
            "a AUTHENTICATE PLAIN AGZyZWQAdGlnZXI=\r\n",
            C::Authenticate {
                mechanism: "PLAIN".into(),
                initial_response: Some(Secret::new(b"AGZyZWQAdGlnZXI=".to_vec())),
            },
        ),
        (
            "a AUTHENTICATE PLAIN =\r\n",
            C::Authenticate {
                mechanism: "PLAIN".into(),
                initial_response: Some(Secret::new(Vec::new())),
            },
        ),
    ];
    for (line, expected) in table {
        let command = parse(line);
        assert_eq!(command.body, expected, "{line:?}");
    }
}

#[test]
fn known_answers_fetch() {
    use FetchAttribute as F;
    let table: Vec<(&str, Vec<FetchAttribute>)> = vec![
        (
            "A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n",
            vec![
                F::Flags,
                F::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::HeaderFields {
                            not: false,
                            fields: vec!["DATE".into(), "FROM".into()],
                        }),
                    },
                    partial: None,
                },
            ],
        ),
        (
            "a FETCH 1 fast\r\n",
            vec![F::Flags, F::InternalDate, F::Rfc822Size],
        ),
        (
            "a FETCH 1 ALL\r\n",
            vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope],
        ),
        (
            "a FETCH 1 FULL\r\n",
            vec![
                F::Flags,
                F::InternalDate,
                F::Rfc822Size,
                F::Envelope,
                F::Body,
            ],
        ),
        ("a FETCH 1 BODY\r\n", vec![F::Body]),
        (
            "a FETCH 1 body.peek[1.2.MIME]<0.1024>\r\n",
            vec![F::BodySection {
                peek: true,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime),
                },
                partial: Some((0, 1024)),
            }],
        ),
        (
            "a FETCH 1 (BODY[] BODY[3.TEXT] RFC822.SIZE UID MODSEQ)\r\n",
            vec![
                F::BodySection {
                    peek: false,
                    section: Section::default(),
                    partial: None,
                },
                F::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![3],
                        text: Some(SectionText::Text),
                    },
                    partial: None,
                },
                F::Rfc822Size,
                F::Uid,
                F::ModSeq,
            ],
        ),
        (
            "a FETCH 1 (BINARY.PEEK[1]<5.10> BINARY.SIZE[2] BINARY[])\r\n",
            vec![
                F::Binary {
                    peek: true,
                    part: vec![1],
                    partial: Some((5, 10)),
                },
                F::BinarySize(vec![2]),
                F::Binary {
                    peek: false,
                    part: vec![],
                    partial: None,
                },
            ],
        ),
        (
            "a FETCH 1 (EMAILID THREADID SAVEDATE PREVIEW (LAZY) BODY[HEADER.FIELDS.NOT (X-A)])\r\n",
            vec![
                F::EmailId,
                F::ThreadId,
                F::SaveDate,
                F::Preview { lazy: true },
                F::BodySection {
                    peek: false,
                    section: Section {
                        part: vec![],
                        text: Some(SectionText::HeaderFields {
                            not: true,
                            fields: vec!["X-A".into()],
                        }),
                    },
                    partial: None,
                },
            ],
        ),
    ];
    for (line, expected) in table {
        match parse(line).body {
            CommandBody::Fetch { attributes, .. } => assert_eq!(attributes, expected, "{line:?}"),
            other => panic!("{line:?} gave {other:?}"),
        }
    }
}

#[test]
fn fetch_changedsince_implies_modseq_and_star_sets() {
    let command = parse("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n");
    assert_eq!(
        command.body,
        CommandBody::Fetch {
            uid: true,
            set: SequenceSet::Ranges(vec![(SeqNumber::Value(1), SeqNumber::Largest)]),
            attributes: vec![FetchAttribute::Flags, FetchAttribute::ModSeq],
            changed_since: Some(12345),
            vanished: true,
        }
    );
}

#[test]
fn known_answers_search() {
    use SearchKey as K;
    let d = |y, m, day| Date::new(y, m, day).unwrap();
    let table: Vec<(&str, SearchCommand)> = vec![
        (
            "A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"\r\n",
            SearchCommand {
                uid: false,
                charset: None,
                result: None,
                key: K::And(vec![
                    K::Flagged,
                    K::Since(d(1994, 2, 1)),
                    K::Not(Box::new(K::From("Smith".into()))),
                ]),
            },
        ),
        (
            "A284 SEARCH CHARSET UTF-8 TEXT {12+}\r\nXXXXXXXXXXXX\r\n",
            SearchCommand {
                uid: false,
                charset: Some("UTF-8".into()),
                result: None,
                key: K::Text("XXXXXXXXXXXX".into()),
            },
        ),
        (
            "a UID SEARCH RETURN (MIN COUNT SAVE) OR (SEEN UNDELETED) 1:5,7 MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
            SearchCommand {
                uid: true,
                charset: None,
                result: Some(vec![
                    SearchReturn::Min,
                    SearchReturn::Count,
                    SearchReturn::Save,
                ]),
                key: K::And(vec![
                    K::Or(
                        Box::new(K::And(vec![K::Seen, K::Undeleted])),
                        Box::new(K::SequenceSet(set(&[(1, 5), (7, 7)]))),
                    ),
                    K::ModSeq(620162338),
                ]),
            },
        ),
        (
            "a SEARCH RETURN () UID $ HEADER X-Spam yes LARGER 100 SMALLER 5000 SENTON \"3-Mar-2020\"\r\n",
            SearchCommand {
                uid: false,
                charset: None,
                result: Some(vec![]),
                key: K::And(vec![
                    K::Uid(SequenceSet::Saved),
                    K::Header("X-Spam".into(), "yes".into()),
                    K::Larger(100),
                    K::Smaller(5000),
                    K::SentOn(d(2020, 3, 3)),
                ]),
            },
        ),
        (
            "a SEARCH KEYWORD $Forwarded UNKEYWORD Junk YOUNGER 3600 ANSWERED UNANSWERED DRAFT UNDRAFT NEW OLD RECENT DELETED UNSEEN UNFLAGGED\r\n",
            SearchCommand {
                uid: false,
                charset: None,
                result: None,
                key: K::And(vec![
                    K::Keyword("$Forwarded".into()),
                    K::Unkeyword("Junk".into()),
                    K::Younger(3600),
                    K::Answered,
                    K::Unanswered,
                    K::Draft,
                    K::Undraft,
                    K::New,
                    K::Old,
                    K::Recent,
                    K::Deleted,
                    K::Unseen,
                    K::Unflagged,
                ]),
            },
        ),
        (
            "a SEARCH SAVEDBEFORE 1-Feb-2024 SAVEDON \"2-Feb-2024\" savedsince 3-Feb-2024 SAVEDATESUPPORTED\r\n",
            SearchCommand {
                uid: false,
                charset: None,
                result: None,
                key: K::And(vec![
                    K::SavedBefore(d(2024, 2, 1)),
                    K::SavedOn(d(2024, 2, 2)),
                    K::SavedSince(d(2024, 2, 3)),
                    K::SaveDateSupported,
                ]),
            },
        ),
    ];
    for (line, expected) in table {
        match parse(line).body {
            CommandBody::Search(search) => assert_eq!(search, expected, "{line:?}"),
            other => panic!("{line:?} gave {other:?}"),
        }
    }
}

#[test]
fn known_answers_store_copy_append_list() {
    assert_eq!(
        parse("A003 STORE 2:4 +FLAGS (\\Deleted)\r\n").body,
        CommandBody::Store {
            uid: false,
            set: set(&[(2, 4)]),
            unchanged_since: None,
            mode: StoreMode::Add,
            silent: false,
            flags: vec![Flag::new("\\Deleted")],
        }
    );
    assert_eq!(
        parse("d105 UID STORE 7,5,9 (UNCHANGEDSINCE 320162338) -FLAGS.SILENT \\seen $Junk\r\n")
            .body,
        CommandBody::Store {
            uid: true,
            set: set(&[(7, 7), (5, 5), (9, 9)]),
            unchanged_since: Some(320162338),
            mode: StoreMode::Remove,
            silent: true,
            flags: vec![Flag::new("\\Seen"), Flag::new("$Junk")],
        }
    );
    assert_eq!(Flag::new("\\SEEN").as_str(), "\\Seen");
    assert_eq!(
        parse("A003 COPY 2:4 MEETING\r\n").body,
        CommandBody::Copy {
            uid: false,
            set: set(&[(2, 4)]),
            mailbox: mailbox("MEETING"),
        }
    );
    assert_eq!(
        parse("a UID MOVE 42:69 foo\r\n").body,
        CommandBody::Move {
            uid: true,
            set: set(&[(42, 69)]),
            mailbox: mailbox("foo"),
        }
    );
    let append = parse(
        "A003 APPEND saved-messages (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {11+}\r\nDate: x\r\n\r\n ~{3+}\r\na\0b\r\n",
    );
    let CommandBody::Append {
        mailbox: m,
        messages,
    } = append.body
    else {
        panic!("not an append");
    };
    assert_eq!(m, mailbox("saved-messages"));
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].flags, vec![Flag::new("\\Seen")]);
    let dt = messages[0].internal_date.unwrap();
    assert_eq!(
        (dt.date, dt.hour, dt.minute, dt.second, dt.zone_minutes),
        (Date::new(1996, 7, 17).unwrap(), 2, 44, 25, -420)
    );
    assert_eq!(dt.unix_timestamp(), 837_596_665);
    assert_eq!(messages[0].data, b"Date: x\r\n\r\n");
    assert!(!messages[0].binary);
    assert_eq!(messages[1].data, b"a\0b");
    assert!(messages[1].binary);

    let CommandBody::List(list) =
        parse("A02 LIST (SUBSCRIBED) \"\" (\"*\" \"Other/%\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n")
            .body
    else {
        panic!("not a list");
    };
    assert_eq!(list.select_options, vec!["SUBSCRIBED".to_string()]);
    assert_eq!(list.reference, "");
    assert_eq!(list.patterns, vec!["*".to_string(), "Other/%".to_string()]);
    assert_eq!(list.return_options, vec!["CHILDREN".to_string()]);
    assert_eq!(
        list.return_status,
        Some(vec![StatusItem::Messages, StatusItem::Unseen])
    );
    let CommandBody::List(list) = parse("a LIST ~/Mail/ &U,BTFw-/%\r\n").body else {
        panic!("not a list");
    };
    assert_eq!(list.reference, "~/Mail/");
    assert_eq!(list.patterns, vec!["台北/%".to_string()]);
}

#[test]
fn sort_and_thread_parse() {
    assert_eq!(
        parse("A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL\r\n").body,
        CommandBody::Sort {
            uid: false,
            criteria: vec![
                SortCriterion {
                    reverse: false,
                    key: SortKey::Subject
                },
                SortCriterion {
                    reverse: true,
                    key: SortKey::Date
                },
            ],
            charset: "UTF-8".into(),
            key: SearchKey::All,
            result: None,
        }
    );
    assert_eq!(
        parse("A283 UID THREAD REFERENCES US-ASCII SINCE 5-MAR-2000\r\n").body,
        CommandBody::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            charset: "US-ASCII".into(),
            key: SearchKey::Since(Date::new(2000, 3, 5).unwrap()),
        }
    );
}

#[test]
fn utf8_mailboxes_after_enable() {
    let options = ParseOptions {
        utf8_mailboxes: true,
    };
    let command = parse_command("a SELECT \"Entwürfe & Co\"\r\n".as_bytes(), options).unwrap();
    assert!(matches!(
        command.body,
        CommandBody::Select { mailbox, .. } if mailbox.as_str() == "Entwürfe & Co"
    ));
    // Without UTF8=ACCEPT, raw 8-bit names are refused, not guessed at.
    let err = parse_err("a SELECT \"Entwürfe\"\r\n".as_bytes());
    assert!(
        matches!(err.error, ParseError::InvalidMailboxName(_)),
        "{err:?}"
    );
}

#[test]
fn ten_thousand_uid_ranges_parse_within_default_limits() {
    let ranges: Vec<String> = (0..10_000u32)
        .map(|i| format!("{}:{}", 100_000 + i * 10, 100_000 + i * 10 + 3))
        .collect();
    let line = format!("a UID FETCH {} (FLAGS)\r\n", ranges.join(","));
    assert!(line.len() > 64 * 1024, "test must exceed 64 KiB");
    let mut framer = Framer::new(Limits::default());
    framer.push(line.as_bytes());
    let Some(FrameEvent::Command(bytes)) = framer.next_event() else {
        panic!("line was not framed");
    };
    match parse_command(&bytes, ParseOptions::default()).unwrap().body {
        CommandBody::Fetch {
            set: SequenceSet::Ranges(r),
            ..
        } => {
            assert_eq!(r.len(), 10_000);
            assert_eq!(
                r[9_999],
                (SeqNumber::Value(199_990), SeqNumber::Value(199_993))
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Input, expected tag of the failure, and a check of the error.
type MalformedCase = (&'static [u8], Option<&'static str>, fn(&ParseError) -> bool);

#[test]
fn malformed_inputs_give_typed_errors() {
    let cases: Vec<MalformedCase> = vec![
        (b"\r\n", None, |e| *e == ParseError::BadTag),
        (b"NOOP\r\n", None, |e| *e == ParseError::BadTag),
        (b"a+b NOOP\r\n", None, |e| *e == ParseError::BadTag),
        (b"a(b NOOP\r\n", None, |e| *e == ParseError::BadTag),
        (b"\xff\xfe\x80 NOOP\r\n", None, |e| *e == ParseError::BadTag),
        (b"a \xff\xfe\r\n", Some("a"), |e| {
            matches!(e, ParseError::Expected { what: "atom", .. })
        }),
        (b"a FROB\r\n", Some("a"), |e| {
            *e == ParseError::UnknownCommand("FROB".into())
        }),
        (b"a NOOP extra\r\n", Some("a"), |e| {
            matches!(e, ParseError::TrailingData(_))
        }),
        (b"a LOGIN {10}\r\nabc\r\n", Some("a"), |e| {
            *e == ParseError::TruncatedLiteral
        }),
        (b"a LOGIN {99999999999999999999}\r\n", Some("a"), |e| {
            matches!(e, ParseError::NumberOutOfRange(_))
        }),
        (b"a LOGIN \"unterminated\r\n", Some("a"), |e| {
            matches!(
                e,
                ParseError::Expected {
                    what: "closing quote",
                    ..
                }
            )
        }),
        (b"a FETCH 0 FLAGS\r\n", Some("a"), |e| {
            matches!(e, ParseError::NumberOutOfRange(_))
        }),
        (b"a FETCH 4294967296 FLAGS\r\n", Some("a"), |e| {
            matches!(e, ParseError::NumberOutOfRange(_))
        }),
        (b"a FETCH 1 (FLAGS\r\n", Some("a"), |e| {
            matches!(e, ParseError::Expected { .. })
        }),
        (b"a FETCH 1 BODY[1.FOO]\r\n", Some("a"), |e| {
            matches!(
                e,
                ParseError::Expected {
                    what: "section text",
                    ..
                }
            )
        }),
        (b"a SEARCH SINCE 30-Feb-2020\r\n", Some("a"), |e| {
            matches!(e, ParseError::InvalidDate(_))
        }),
        (b"a SEARCH FLOOP\r\n", Some("a"), |e| {
            matches!(
                e,
                ParseError::Expected {
                    what: "search key",
                    ..
                }
            )
        }),
        (b"a SELECT &Jjo\r\n", Some("a"), |e| {
            matches!(e, ParseError::InvalidMailboxName(_))
        }),
        (b"a APPEND INBOX {3+}\r\na\0b\r\n", Some("a"), |e| {
            matches!(e, ParseError::Expected { .. })
        }),
        (
            b"a APPEND INBOX \"32-Jan-2020 00:00:00 +0000\" {1+}\r\nx\r\n",
            Some("a"),
            |e| matches!(e, ParseError::InvalidDate(_)),
        ),
        (b"a SEARCH TEXT \"\xff\"\r\n", Some("a"), |e| {
            *e == ParseError::InvalidUtf8("search string")
        }),
        (b"a STORE 1 FLAGS\r\n", Some("a"), |e| {
            matches!(e, ParseError::Expected { what: "SP", .. })
        }),
    ];
    for (input, expected_tag, check) in cases {
        let failure = parse_err(input);
        assert_eq!(
            failure.tag.as_ref().map(Tag::as_str),
            expected_tag,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert!(
            check(&failure.error),
            "{:?} gave {:?}",
            String::from_utf8_lossy(input),
            failure.error
        );
    }
}

#[test]
fn deeply_nested_search_is_refused_not_overflowed() {
    let mut line = String::from("a SEARCH ");
    for _ in 0..10_000 {
        line.push_str("NOT ");
    }
    line.push_str("ALL\r\n");
    assert_eq!(parse_err(line.as_bytes()).error, ParseError::TooDeep);
    let mut line = String::from("a SEARCH ");
    line.push_str(&"(".repeat(5_000));
    line.push_str("ALL");
    line.push_str(&")".repeat(5_000));
    line.push_str("\r\n");
    assert_eq!(parse_err(line.as_bytes()).error, ParseError::TooDeep);
}

#[test]
fn decode_encode_decode_round_trips() {
    let lines = [
        "a1 CAPABILITY\r\n",
        "a2 LOGIN \"fred smith\" {7+}\r\nse\"cr\r\n\r\n",
        "a3 SELECT INBOX (CONDSTORE QRESYNC (67890007 20050715194045000 41,43:211 (1:5 10:14)))\r\n",
        "a4 EXAMINE \"&U,BTFw-/x y\"\r\n",
        "a5 CREATE Trash (USE (\\Trash))\r\n",
        "a6 LIST (SUBSCRIBED) \"\" (\"*\" \"Other/%\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        "a7 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ SIZE)\r\n",
        "a8 APPEND saved (\\Seen $X) \"17-Jul-1996 02:44:25 -0700\" {11+}\r\nDate: x\r\n\r\n ~{3+}\r\na\0b\r\n",
        "a9 UID SEARCH RETURN (MIN MAX) CHARSET UTF-8 OR (SEEN UNDELETED) NOT 1:5,7 TEXT {4+}\r\näö SINCE 1-Feb-1994 UID $\r\n",
        "b1 UID FETCH 1:*,3 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (DATE \"X Y\")]<0.100> BINARY[1] PREVIEW (LAZY)) (CHANGEDSINCE 12 VANISHED)\r\n",
        "b2 STORE 2:4 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Deleted Junk)\r\n",
        "b3 UID MOVE 42:69 \"Gel&APY-scht\"\r\n",
        "b4 ID (\"name\" \"x\" \"os\" NIL)\r\n",
        "b5 UID SORT RETURN (COUNT) (REVERSE DATE SUBJECT) UTF-8 SINCE 1-Jan-2020 FROM bob\r\n",
        "b6 THREAD ORDEREDSUBJECT UTF-8 ALL\r\n",
        "b7 SETQUOTA \"\" (STORAGE 512)\r\n",
        "b8 AUTHENTICATE PLAIN AGZyZWQAdGlnZXI=\r\n",
        "b9 UID EXPUNGE 3000:3002,4000\r\n",
        "c1 LSUB \"#news.\" \"comp.mail.*\"\r\n",
        "c2 ENABLE QRESYNC UTF8=ACCEPT\r\n",
        "c3 SEARCH MODSEQ 5 OLDER 10 EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9\r\n",
        "c4 SEARCH NOT SAVEDSINCE 1-Feb-1994 SAVEDATESUPPORTED SAVEDON 2-Mar-2001\r\n",
        "c5 NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (FROM)]) MessageExpunge FlagChange)) (SUBTREE (Lists \"A b\") (MessageNew MessageExpunge)) (MAILBOXES misc (MailboxName)) (PERSONAL NONE)\r\n",
        "c6 NOTIFY NONE\r\n",
        "c7 COMPRESS DEFLATE\r\n",
        "c8 APPEND INBOX (\\Seen) UTF8 (~{8+}\r\nSu: ä\r\n)\r\n",
    ];
    for line in lines {
        let first = parse(line);
        let encoded = encode_command(&first, EncodeOptions::default());
        let second = parse_command(&encoded, ParseOptions::default()).unwrap_or_else(|e| {
            panic!(
                "re-encoding of {line:?} = {:?} did not parse: {e:?}",
                String::from_utf8_lossy(&encoded)
            )
        });
        assert_eq!(first, second, "{line:?}");
        // Encoding is canonical: a second round gives the same bytes.
        assert_eq!(encode_command(&second, EncodeOptions::default()), encoded);
    }
}

fn encoded(response: Response) -> String {
    String::from_utf8(response_bytes(&response, EncodeOptions::default())).unwrap()
}

#[test]
fn status_responses_encode_as_in_rfc_examples() {
    let ok = |tag_: &str, code, text: &str| {
        Response::Status(StatusResponse::tagged(
            tag(tag_),
            StatusKind::Ok,
            code,
            text,
        ))
    };
    let table: Vec<(Response, &str)> = vec![
        (
            ok("A142", Some(Code::ReadWrite), "SELECT completed"),
            "A142 OK [READ-WRITE] SELECT completed\r\n",
        ),
        (
            Response::Status(StatusResponse::untagged(
                StatusKind::Ok,
                Some(Code::PermanentFlags(vec![
                    "\\Deleted".into(),
                    "\\Seen".into(),
                    "\\*".into(),
                ])),
                "Limited",
            )),
            "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        ),
        (
            ok(
                "A003",
                Some(Code::AppendUid {
                    uid_validity: 38505,
                    uids: vec![3955],
                }),
                "APPEND completed",
            ),
            "A003 OK [APPENDUID 38505 3955] APPEND completed\r\n",
        ),
        (
            ok(
                "A004",
                Some(Code::CopyUid {
                    uid_validity: 38505,
                    source: vec![304, 319, 320, 321, 322],
                    destination: vec![3956, 3957, 3958, 3959, 3960],
                }),
                "Done",
            ),
            "A004 OK [COPYUID 38505 304,319:322 3956:3960] Done\r\n",
        ),
        (
            Response::Status(StatusResponse::tagged(
                tag("A1"),
                StatusKind::No,
                Some(Code::TooBig),
                "line\r\nbreak",
            )),
            "A1 NO [TOOBIG] line  break\r\n",
        ),
        (
            Response::Status(StatusResponse::untagged(
                StatusKind::Bye,
                None,
                "IMAP4rev2 Server logging out",
            )),
            "* BYE IMAP4rev2 Server logging out\r\n",
        ),
        (
            Response::Continue("Ready for literal data".into()),
            "+ Ready for literal data\r\n",
        ),
        (
            ok(
                "d105",
                Some(Code::Modified(vec![7, 9])),
                "Conditional STORE failed",
            ),
            "d105 OK [MODIFIED 7,9] Conditional STORE failed\r\n",
        ),
    ];
    for (response, expected) in table {
        assert_eq!(encoded(response), expected);
    }
}

#[test]
fn data_responses_encode_as_in_rfc_examples() {
    let table: Vec<(Data, &str)> = vec![
        (Data::Exists(172), "* 172 EXISTS\r\n"),
        (Data::Expunge(3), "* 3 EXPUNGE\r\n"),
        (
            Data::Flags(vec![
                "\\Answered".into(),
                "\\Flagged".into(),
                "\\Deleted".into(),
                "\\Seen".into(),
                "\\Draft".into(),
            ]),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        ),
        (
            Data::List {
                attributes: vec!["\\Noselect".into()],
                delimiter: Some('/'),
                mailbox: "~/Mail/foo".into(),
                child_info: Vec::new(),
                old_name: None,
            },
            "* LIST (\\Noselect) \"/\" ~/Mail/foo\r\n",
        ),
        (
            Data::List {
                attributes: vec![],
                delimiter: Some('/'),
                mailbox: "台北 x".into(),
                child_info: Vec::new(),
                old_name: None,
            },
            "* LIST () \"/\" \"&U,BTFw- x\"\r\n",
        ),
        (
            Data::Status {
                mailbox: "blurdybloop".into(),
                items: vec![
                    (StatusItem::Messages, StatusValue::Number(231)),
                    (StatusItem::UidNext, StatusValue::Number(44292)),
                ],
            },
            "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        ),
        (
            Data::Search {
                ids: vec![2, 84, 882],
                highest_modseq: None,
            },
            "* SEARCH 2 84 882\r\n",
        ),
        (
            Data::Search {
                ids: vec![2, 5, 6, 7, 11, 12, 18, 19, 20, 23],
                highest_modseq: Some(917162500),
            },
            "* SEARCH 2 5 6 7 11 12 18 19 20 23 (MODSEQ 917162500)\r\n",
        ),
        (
            Data::ESearch {
                tag: Some(tag("A285")),
                uid: true,
                min: Some(7),
                max: Some(3800),
                count: None,
                all: None,
                highest_modseq: None,
            },
            "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800\r\n",
        ),
        (
            Data::ESearch {
                tag: Some(tag("A284")),
                uid: false,
                min: None,
                max: None,
                count: Some(5),
                all: Some(vec![2, 10, 11, 12, 13]),
                highest_modseq: None,
            },
            "* ESEARCH (TAG \"A284\") COUNT 5 ALL 2,10:13\r\n",
        ),
        (
            Data::Vanished {
                earlier: true,
                uids: vec![41, 43, 44, 45, 46],
            },
            "* VANISHED (EARLIER) 41,43:46\r\n",
        ),
        (
            // RFC 5256 section 6: (2)(3 6 (4 23)(44 7 96))
            Data::Thread(ThreadList::from_trees(&[
                ThreadNode {
                    id: 2,
                    children: vec![],
                },
                ThreadNode {
                    id: 3,
                    children: vec![ThreadNode {
                        id: 6,
                        children: vec![
                            ThreadNode {
                                id: 4,
                                children: vec![ThreadNode {
                                    id: 23,
                                    children: vec![],
                                }],
                            },
                            ThreadNode {
                                id: 44,
                                children: vec![ThreadNode {
                                    id: 7,
                                    children: vec![ThreadNode {
                                        id: 96,
                                        children: vec![],
                                    }],
                                }],
                            },
                        ],
                    }],
                },
            ])),
            "* THREAD (2)(3 6 (4 23)(44 7 96))\r\n",
        ),
        (
            Data::Thread(ThreadList::from_trees(&[ThreadNode {
                id: 0,
                children: vec![
                    ThreadNode {
                        id: 3,
                        children: vec![],
                    },
                    ThreadNode {
                        id: 5,
                        children: vec![],
                    },
                ],
            }])),
            "* THREAD ((3)(5))\r\n",
        ),
        (
            Data::Capability(vec!["IMAP4rev1".into(), "IMAP4rev2".into(), "IDLE".into()]),
            "* CAPABILITY IMAP4rev1 IMAP4rev2 IDLE\r\n",
        ),
        (
            Data::Namespace {
                personal: vec![(String::new(), Some('/'))],
                other: vec![],
                shared: vec![],
            },
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        ),
        (
            Data::Quota {
                root: String::new(),
                resources: vec![("STORAGE".into(), 10, 512)],
            },
            "* QUOTA \"\" (STORAGE 10 512)\r\n",
        ),
    ];
    for (data, expected) in table {
        assert_eq!(encoded(Response::Data(data)), expected);
    }
}

#[test]
fn fetch_response_with_envelope_and_bodystructure() {
    let envelope = Envelope {
        date: Some("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)".into()),
        subject: Some("IMAP4rev1 WG mtg summary and minutes".into()),
        from: vec![Address {
            name: Some("Terry Gray".into()),
            adl: None,
            mailbox: Some("gray".into()),
            host: Some("cac.washington.edu".into()),
        }],
        sender: vec![],
        reply_to: vec![],
        to: vec![Address {
            name: None,
            adl: None,
            mailbox: Some("imap".into()),
            host: Some("cac.washington.edu".into()),
        }],
        cc: vec![],
        bcc: vec![],
        in_reply_to: None,
        message_id: Some("<B27397-0100000@cac.washington.edu>".into()),
    };
    let body = BodyStructure::Single {
        media_type: "TEXT".into(),
        subtype: "PLAIN".into(),
        params: vec![("CHARSET".into(), "US-ASCII".into())],
        id: None,
        description: None,
        encoding: "7BIT".into(),
        size: 3028,
        kind: SinglePartKind::Text { lines: 92 },
        extension: BodyExtension::default(),
    };
    let response = Response::Data(Data::Fetch {
        seq: 12,
        items: vec![
            FetchItem::Flags(vec!["\\Seen".into()]),
            FetchItem::InternalDate(837_595_405),
            FetchItem::Rfc822Size(4286),
            FetchItem::Envelope(Box::new(envelope)),
            FetchItem::Body(Box::new(body.clone())),
            FetchItem::BodyStructure(Box::new(BodyStructure::Multi {
                parts: vec![body.clone(), body],
                subtype: "MIXED".into(),
                params: vec![("BOUNDARY".into(), "x".into())],
                extension: BodyExtension::default(),
            })),
            FetchItem::BodySection {
                section: Section {
                    part: vec![1],
                    text: Some(SectionText::Mime),
                },
                origin: Some(0),
                data: Some(b"ab\r\n".to_vec()),
            },
            FetchItem::ModSeq(624140003),
        ],
    });
    assert_eq!(
        encoded(response),
        "* 12 FETCH (FLAGS (\\Seen) INTERNALDATE \"17-Jul-1996 09:23:25 +0000\" \
         RFC822.SIZE 4286 ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
         \"IMAP4rev1 WG mtg summary and minutes\" ((\"Terry Gray\" NIL \"gray\" \
         \"cac.washington.edu\")) NIL NIL ((NIL NIL \"imap\" \"cac.washington.edu\")) NIL NIL \
         NIL \"<B27397-0100000@cac.washington.edu>\") \
         BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92) \
         BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 \
         NIL NIL NIL NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92 \
         NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"x\") NIL NIL NIL) \
         BODY[1.MIME]<0> {4}\r\nab\r\n MODSEQ (624140003))\r\n"
    );
}

#[test]
fn strings_switch_to_literals_for_8bit_and_line_breaks() {
    let response = Response::Data(Data::Fetch {
        seq: 1,
        items: vec![FetchItem::Envelope(Box::new(Envelope {
            subject: Some("Grüße".into()),
            in_reply_to: Some("a\"b\\c".into()),
            ..Envelope::default()
        }))],
    });
    assert_eq!(
        encoded(response),
        "* 1 FETCH (ENVELOPE (NIL {7}\r\nGrüße NIL NIL NIL NIL NIL NIL \"a\\\"b\\\\c\" NIL))\r\n"
    );
    let binary = Response::Data(Data::Fetch {
        seq: 2,
        items: vec![FetchItem::Binary {
            part: vec![1],
            origin: None,
            data: Some(vec![0, 1, 2]),
        }],
    });
    assert_eq!(
        response_bytes(&binary, EncodeOptions::default()),
        b"* 2 FETCH (BINARY[1] ~{3}\r\n\0\x01\x02)\r\n"
    );
}

#[test]
fn date_conversions_are_consistent() {
    for ts in [0i64, 837_595_405, 951_782_400, 1_709_251_199, 4_102_444_800] {
        let dt = DateTime::from_unix_timestamp(ts);
        assert_eq!(dt.unix_timestamp(), ts);
    }
    assert_eq!(
        encode::date_time_string(951_782_400),
        "29-Feb-2000 00:00:00 +0000"
    );
    assert!(Date::new(2100, 2, 29).is_none());
    assert!(Date::new(2000, 2, 29).is_some());
}

/// RFC 3501 section 8 sample exchange, client side: every client line parses to the expected
/// command name, through the framer, including the synchronising literal handshake.
#[test]
fn rfc3501_sample_session_client_lines() {
    let transcript: &[(&str, &str)] = &[
        ("a001 login mrc secret\r\n", "LOGIN"),
        ("a002 select inbox\r\n", "SELECT"),
        ("a003 fetch 12 full\r\n", "FETCH"),
        ("a004 fetch 12 body[header]\r\n", "FETCH"),
        ("a005 store 12 +flags \\deleted\r\n", "STORE"),
        ("a006 logout\r\n", "LOGOUT"),
    ];
    let mut framer = Framer::new(Limits::default());
    for (line, name) in transcript {
        framer.push(line.as_bytes());
        let Some(FrameEvent::Command(bytes)) = framer.next_event() else {
            panic!("{line:?} not framed");
        };
        let command = parse_command(&bytes, ParseOptions::default()).unwrap();
        assert_eq!(command.body.name(), *name);
    }
    // RFC 9051 section 6.3.12 APPEND with a synchronising literal.
    framer.push(b"A003 APPEND saved-messages (\\Seen) {326}\r\n");
    assert_eq!(framer.next_event(), Some(FrameEvent::ContinuationNeeded));
    let message = "Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.siam.edu.example\r\nMessage-Id: <B27397-0100000@Blurdybloop.example>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
    assert_eq!(message.len(), 326);
    framer.push(message.as_bytes());
    framer.push(b"\r\n");
    let Some(FrameEvent::Command(bytes)) = framer.next_event() else {
        panic!("append not framed");
    };
    let CommandBody::Append { messages, .. } =
        parse_command(&bytes, ParseOptions::default()).unwrap().body
    else {
        panic!("not an append");
    };
    assert_eq!(messages[0].data, message.as_bytes());
}

/// A deterministic stand-in for the fuzz target (fuzz/fuzz_targets/imap_command.rs) that runs
/// with the unit tests: mutate valid commands byte-wise and check that framing and parsing never
/// panic and that every command that parses survives encode -> parse unchanged.
#[test]
fn mutated_commands_never_panic_and_round_trip() {
    let seeds: &[&[u8]] = &[
        b"a1 LOGIN \"fred\" {6+}\r\nsecret\r\n",
        b"a2 SELECT INBOX (QRESYNC (1 2 1:5 (1,3 5,7)))\r\n",
        b"a3 UID FETCH 1:*,5 (FLAGS BODY.PEEK[1.HEADER.FIELDS (SUBJECT)]<0.10> BINARY[2]) (CHANGEDSINCE 3)\r\n",
        b"b1 SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (SEEN UNDELETED) NOT 1:5 SINCE 1-Feb-1994 HEADER X \"y z\"\r\n",
        b"b2 APPEND x (\\Seen) \"17-Jul-1996 02:44:25 -0700\" ~{3+}\r\na\0b\r\n",
        b"b3 STORE 1 (UNCHANGEDSINCE 5) +FLAGS.SILENT (\\Deleted $x)\r\n",
        b"c1 LIST (SUBSCRIBED) \"\" (\"*\" \"&U,BTFw-/%\") RETURN (CHILDREN STATUS (MESSAGES))\r\n",
        b"c2 UID SORT (REVERSE DATE) UTF-8 ALL\r\nc3 ID (\"a\" NIL)\r\nc4 ENABLE QRESYNC\r\n",
        b"c5 CREATE \"a b\" (USE (\\Trash))\r\nc6 RENAME a b\r\nc7 STATUS x (SIZE)\r\n",
    ];
    let specials = b" ()[]{}<>\"\\*%$+-~.:,0123456789\r\n\0\xffAZaz";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut parsed = 0;
    for round in 0..20_000u32 {
        let seed = seeds[round as usize % seeds.len()];
        let mut input = seed.to_vec();
        for _ in 0..=(next() % 4) {
            let at = (next() as usize) % (input.len() + 1);
            match next() % 3 {
                0 if at < input.len() => input[at] = specials[(next() as usize) % specials.len()],
                1 => input.insert(at, specials[(next() as usize) % specials.len()]),
                _ => input.truncate(at.max(1)),
            }
        }
        let utf8 = next() % 2 == 0;
        let mut framer = Framer::new(Limits {
            max_line: 512,
            max_literal: 512,
            max_command: 2048,
        });
        framer.push(&input);
        while let Some(event) = framer.next_event() {
            let FrameEvent::Command(bytes) = event else {
                continue;
            };
            let options = ParseOptions {
                utf8_mailboxes: utf8,
            };
            let Ok(command) = parse_command(&bytes, options) else {
                continue;
            };
            parsed += 1;
            let encode_options = EncodeOptions {
                utf8_mailboxes: utf8,
            };
            let encoded = encode_command(&command, encode_options);
            let again = parse_command(&encoded, options).unwrap_or_else(|e| {
                panic!(
                    "{:?} re-encoded as {:?} does not parse: {e:?}",
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(&encoded)
                )
            });
            assert_eq!(command, again, "{:?}", String::from_utf8_lossy(&bytes));
        }
    }
    assert!(
        parsed > 3_000,
        "mutations should often stay valid, got {parsed}"
    );
}

/// A reply chain far deeper than a small thread stack: encoding and dropping it must not
/// recurse (anyone can mail such a chain to a user who then runs THREAD).
#[test]
fn a_thread_deeper_than_the_stack_encodes_and_drops() {
    let depth = 100_000u32;
    let encoded_line = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let mut node = ThreadNode {
                id: depth,
                children: vec![],
            };
            for id in (1..depth).rev() {
                node = ThreadNode {
                    id,
                    children: vec![node],
                };
            }
            let line = encoded(Response::Data(Data::Thread(ThreadList::from_trees(&[
                node,
            ]))));
            line.len()
        })
        .unwrap()
        .join()
        .expect("no stack overflow");
    let digits: usize = (1..=depth).map(|n| n.to_string().len()).sum();
    // "* THREAD (" + ids separated by spaces + ")\r\n"
    assert_eq!(encoded_line, 10 + digits + (depth as usize - 1) + 3);
}
