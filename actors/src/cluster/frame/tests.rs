//! Frames written and read back, whole and in pieces.
use super::*;

#[test]
fn a_long_frame_travels_in_pieces_and_comes_back_whole() {
    let output = "é".repeat(CHUNK_BYTES); // two bytes each: pieces must split at chars
    let frame = Frame::Event {
        epoch: 7,
        event: Event::Progress {
            task: TaskId("task-1".into()),
            progress: TaskProgress::Held(output.clone()),
        },
    };
    let pieces = frame.encode(3);
    assert!(pieces.len() >= 2, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() <= CHUNK_BYTES + 64));
    let mut a = Assembler::default();
    let mut whole = None;
    for p in &pieces {
        whole = a.take(p).expect("readable");
    }
    let Some(Frame::Event {
        epoch: 7,
        event:
            Event::Progress {
                progress: TaskProgress::Held(text),
                ..
            },
    }) = whole
    else {
        panic!("not the frame sent");
    };
    assert_eq!(text, output);
}

/// Every kind of frame is written and read back (serde refuses some enum shapes only
/// when one is written).
#[test]
fn every_frame_is_written_and_read_back() {
    let task = TaskId("task-1".into());
    let slot = SlotId("h1/slot-0".into());
    let request: ApprovalRequest = serde_json::from_value(serde_json::json!({
        "request_id": "apr-1", "task_id": "task-1", "slot_id": "h1/slot-0", "kind": "tool",
        "tool": "Bash", "summary": "ls", "input": {}, "requested_at": "t", "expires_at": "t"
    }))
    .expect("a request");
    let events = vec![
        Event::Added { slot: slot.clone() },
        Event::Ready {
            slot: slot.clone(),
            pid: 1,
            turns: 2,
            worktree: None,
            cwd: None,
        },
        Event::Changed {
            slot: slot.clone(),
            status: SlotStatus::Busy,
            pid: Some(1),
            turns: 0,
        },
        Event::Removed { slot: slot.clone() },
        Event::Down {
            slot: slot.clone(),
            reason: "r".into(),
            restarts: 1,
            restarting: true,
        },
        Event::Started {
            task: task.clone(),
            slot: slot.clone(),
            ack: true,
        },
        Event::Rejected {
            slot: slot.clone(),
            task: task.clone(),
            died_before_turn: None,
        },
        Event::RateLimited {
            slot: slot.clone(),
            task: task.clone(),
            error: "429".into(),
        },
        Event::ApiPressure {
            slot: slot.clone(),
            status: 429,
        },
        Event::ApiWindows(RateLimitInfo::default()),
        Event::Finished {
            task: task.clone(),
            slot: slot.clone(),
            outcome: Box::new(TaskOutcome::unbilled(TaskStatus::Failed, "x")),
            started_ms_ago: Some(3),
        },
        Event::Spend {
            task: task.clone(),
            usd: 0.5,
            tokens: 10,
        },
        Event::Progress {
            task: task.clone(),
            progress: TaskProgress::Held("h".into()),
        },
        Event::Ask {
            request: Box::new(request),
            timeout_ms: 5,
        },
        Event::Decided {
            outcome: "allow".into(),
            by: "rule:x".into(),
        },
        Event::Transcript {
            task: task.clone(),
            line: "{}".into(),
        },
        Event::TranscriptClosed { task: task.clone() },
        Event::Retiring {
            slots: vec![slot.clone()],
        },
        Event::TaskEnded { task: task.clone() },
        Event::Withdrawn {
            request_id: "apr-1".into(),
        },
    ];
    let commands = vec![
        Command::Run(Box::new(RemoteAssignment {
            task: task.clone(),
            prompt: "p".into(),
            preamble: Some("c".into()),
            settings: ProcSettings::default(),
            deadline_in_ms: 5,
            timeout_ms: 6,
            progress: true,
            resume: None,
            rules: Some(RuleSet::parse(&["Bash(ls:*)"], &["Read"]).expect("rules")),
            approval_timeout_ms: Some(7),
        })),
        Command::StartRecorded {
            task: task.clone(),
            result: Err("no".into()),
        },
        Command::Cancel {
            task: task.clone(),
            status: TaskStatus::Cancelled,
            reason: "r".into(),
        },
        Command::Release,
        Command::Wake,
        Command::Answered(Answered {
            task: task.clone(),
            request_id: "apr-1".into(),
            answer: claude_pool_protocol::approvals::Answer::cancel("c"),
            by: "b".into(),
        }),
    ];
    let mut frames = vec![
        Frame::Hello {
            host: "h1".into(),
            version: VERSION.into(),
            slots: 2,
        },
        Frame::Welcome {
            epoch: 1,
            version: VERSION.into(),
            heartbeat_ms: 1,
            deadline_ms: 2,
            record_starts: true,
            transcripts: true,
        },
        Frame::Refused { reason: "r".into() },
        Frame::Ping { epoch: 1 },
        Frame::Pong { epoch: 1 },
        Frame::Host {
            epoch: 1,
            command: HostCommand::AddSlots {
                slots: vec![slot.clone()],
            },
        },
        Frame::Host {
            epoch: 1,
            command: HostCommand::RetireSlots {
                count: 1,
                grace_ms: 5,
            },
        },
    ];
    frames.extend(
        events
            .into_iter()
            .map(|event| Frame::Event { epoch: 1, event }),
    );
    frames.extend(commands.into_iter().map(|command| Frame::Command {
        epoch: 1,
        slot: slot.clone(),
        command,
    }));
    for frame in frames {
        let text = serde_json::to_string(&frame)
            .unwrap_or_else(|e| panic!("{frame:?} cannot be written: {e}"));
        let back: Frame =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} cannot be read: {e}"));
        assert_eq!(serde_json::to_string(&back).expect("again"), text);
    }
}

#[test]
fn an_unreadable_or_endless_frame_is_an_error() {
    let mut a = Assembler::default();
    assert!(a.take("{not json").is_err());
    let big = "x".repeat(CHUNK_BYTES);
    let piece = serde_json::to_string(&Frame::Chunk {
        id: 1,
        last: false,
        data: big,
    })
    .expect("json");
    let mut err = None;
    for _ in 0..=(MAX_FRAME_BYTES / CHUNK_BYTES) {
        if let Err(e) = a.take(&piece) {
            err = Some(e);
            break;
        }
    }
    assert!(err.expect("refused").contains("longer than"));
}
