//! The JavaScript engine: one QuickJS runtime per plugin, on a thread of its own.
//!
//! A QuickJS runtime is single-threaded, so each [`JsPlugin`] owns one OS thread that owns the
//! plugin's `Runtime` and `Context`; calls reach it through a bounded channel and answer through
//! a oneshot. What each runtime keeps:
//! - **a time budget per call**: an interrupt handler stops the engine once the call's deadline
//!   (the manifest's `limits.timeoutMs`) has passed, so an infinite loop ends as a
//!   [`CallError::Timeout`];
//! - **a memory limit** (`limits.memoryMb`): an allocation over it fails the call as
//!   [`CallError::OutOfMemory`];
//! - after a timeout or memory failure the runtime is thrown away and the module evaluated
//!   again in a fresh one, so no half-finished state survives (module-level variables reset);
//! - **no ambient authority**: no module loader (every `import` fails), no `std`/`os` modules,
//!   no timers, no network. The plugin sees only the `ctx` object built by [`PRELUDE`]:
//!   `publish` (checked against the manifest's `publish` patterns), `log`, `config` and `kv`;
//! - effects are **buffered**: `ctx.publish` and `ctx.kv.set` are recorded during the call and
//!   handed back in [`CallOutput`]; the host applies them only when the call succeeded. A failed
//!   call's key-value writes are undone in the in-memory copy.
//!
//! This file holds the thread, the runtime and the calls; `ctx` holds the `ctx` object: the
//! prelude and the native functions behind it.

mod ctx;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::function::Rest;
use rquickjs::{
    CaughtError, Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime, Value,
};
use tokio::sync::{mpsc, oneshot};

use self::ctx::{CallState, host_object};
pub use self::ctx::{MAX_PUBLISHES_PER_CALL, PRELUDE};
use super::kv::KvMap;
use super::manifest::Manifest;

/// Calls that may wait for a plugin's thread.
pub const CALL_QUEUE: usize = 64;
/// Stack the engine may use (the thread gets more, for Rust frames around it).
const MAX_STACK: usize = 512 * 1024;
/// Stack of the plugin's thread.
const THREAD_STACK: usize = 4 * 1024 * 1024;
/// Most bytes of an error message kept.
const MAX_ERROR_LEN: usize = 2048;

/// Which export to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// `onEvent(event, ctx)`.
    OnEvent,
    /// `transform(event, ctx)`.
    Transform,
    /// `webhookPayload(event, endpoint, ctx)`.
    WebhookPayload,
}

impl Export {
    /// The exported function's name.
    pub fn js_name(self) -> &'static str {
        match self {
            Export::OnEvent => "onEvent",
            Export::Transform => "transform",
            Export::WebhookPayload => "webhookPayload",
        }
    }
}

/// What a successful call returns.
#[derive(Debug, Default)]
pub struct CallOutput {
    /// The function's result as JSON (`None` for `undefined`).
    pub value: Option<String>,
    /// `ctx.publish(type, payload)` calls: type and payload JSON, in order.
    pub publishes: Vec<(String, String)>,
    /// Key-value writes: key and new value JSON (`None`: deleted), in order.
    pub kv_writes: Vec<(String, Option<String>)>,
    /// `ctx.publish` calls refused because the type is outside the manifest.
    pub refused: u64,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The code threw (or returned a rejected promise).
    #[error("{0}")]
    Exception(String),
    /// The call ran past its time budget and was interrupted.
    #[error("interrupted after its time budget of {0} ms")]
    Timeout(u32),
    /// The runtime reached its memory limit.
    #[error("ran out of its {0} MiB memory limit")]
    OutOfMemory(u32),
    /// The plugin's thread is gone or its queue is full.
    #[error("the plugin is not running: {0}")]
    Unavailable(String),
}

impl CallError {
    /// The metric outcome: `error`, `timeout`, `memory` or `unavailable`.
    pub fn outcome(&self) -> &'static str {
        match self {
            CallError::Exception(_) => "error",
            CallError::Timeout(_) => "timeout",
            CallError::OutOfMemory(_) => "memory",
            CallError::Unavailable(_) => "unavailable",
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// Why evaluating or calling the plugin's code failed inside the engine; a call's error
/// becomes [`CallError::Exception`] (or a timeout or memory error), a load's a [`LoadError`].
#[derive(Debug, thiserror::Error)]
enum ScriptError {
    /// The engine failed or the code threw: the message and stack, truncated.
    #[error("{0}")]
    Thrown(String),
    /// The module does not export the called function.
    #[error("index.js does not export {0}")]
    NoExport(&'static str),
    /// The returned promise waits for something that never happens.
    #[error(
        "the returned promise never settles (only promises resolved by the plugin itself are awaited)"
    )]
    NeverSettles,
}

struct Request {
    export: Export,
    args: Vec<String>,
    reply: oneshot::Sender<Result<CallOutput, CallError>>,
}

/// A loaded JavaScript plugin: a handle on its thread. Dropping the last handle ends the thread
/// once its queued calls are done.
#[derive(Debug, Clone)]
pub struct JsPlugin {
    calls: mpsc::Sender<Request>,
    exports: Vec<Export>,
    timeout_ms: u32,
}

impl JsPlugin {
    /// Starts the plugin's thread, evaluates `source` as an ES module and waits until it is
    /// ready. `kv` is the plugin's key-value store as last persisted.
    pub async fn load(
        manifest: &Manifest,
        source: String,
        kv: BTreeMap<String, String>,
    ) -> Result<JsPlugin, LoadError> {
        let (calls, requests) = mpsc::channel(CALL_QUEUE);
        let (ready, loaded) = oneshot::channel();
        let manifest = manifest.clone();
        let timeout_ms = manifest.limits.timeout_ms;
        std::thread::Builder::new()
            .name(format!("plugin-{}", manifest.name))
            .stack_size(THREAD_STACK)
            .spawn(move || thread_main(manifest, source, kv, requests, ready))
            .map_err(|e| LoadError(format!("cannot start the plugin's thread: {e}")))?;
        let exports = loaded
            .await
            .map_err(|_| LoadError("the plugin's thread ended while loading".into()))??;
        Ok(JsPlugin {
            calls,
            exports,
            timeout_ms,
        })
    }

    /// Whether the module exports `export`.
    pub fn exports(&self, export: Export) -> bool {
        self.exports.contains(&export)
    }

    /// The exported functions' names.
    pub fn export_names(&self) -> Vec<&'static str> {
        self.exports.iter().map(|e| e.js_name()).collect()
    }

    /// Calls that wait for the plugin's thread.
    pub fn queue_depth(&self) -> usize {
        CALL_QUEUE - self.calls.capacity()
    }

    /// Calls `export` with JSON arguments (the event, then the endpoint for `webhookPayload`).
    ///
    /// Waits at most for the queue ahead plus the call's own budget; the engine itself stops the
    /// call at its budget.
    pub async fn call(&self, export: Export, args: Vec<String>) -> Result<CallOutput, CallError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            export,
            args,
            reply,
        };
        let wait = Duration::from_millis(u64::from(self.timeout_ms) * (CALL_QUEUE as u64 + 2));
        let sent = tokio::time::timeout(wait, self.calls.send(request)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(CallError::Unavailable("its thread ended".into())),
            Err(_) => return Err(CallError::Unavailable("its call queue stayed full".into())),
        }
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Unavailable("its thread ended".into())),
            Err(_) => Err(CallError::Unavailable("no answer in time".into())),
        }
    }
}

/// A runtime with the plugin's module evaluated in it.
struct Instance {
    // Field order is drop order: the saved values go before their context and runtime.
    module: Persistent<Object<'static>>,
    ctx_object: Persistent<Object<'static>>,
    context: Context,
    runtime: Runtime,
    deadline: Rc<Cell<Option<Instant>>>,
}

fn thread_main(
    manifest: Manifest,
    source: String,
    kv: BTreeMap<String, String>,
    mut requests: mpsc::Receiver<Request>,
    ready: oneshot::Sender<Result<Vec<Export>, LoadError>>,
) {
    let state = Rc::new(RefCell::new(CallState {
        kv: KvMap::new(kv),
        manifest,
        may_publish: false,
        publishes: Vec::new(),
        refused: 0,
    }));
    let mut instance = match Instance::new(&state, &source) {
        Ok(i) => i,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(instance.exports()));
    while let Some(request) = requests.blocking_recv() {
        let result = instance.call(&state, request.export, &request.args);
        if matches!(
            result,
            Err(CallError::Timeout(_) | CallError::OutOfMemory(_))
        ) {
            // The engine stopped mid-call: start over in a fresh runtime.
            drop(instance);
            instance = match Instance::new(&state, &source) {
                Ok(i) => i,
                Err(e) => {
                    let name = state.borrow().manifest.name.clone();
                    tracing::error!(plugin = %name, error = %e, "plugin cannot be reloaded after a failure; it stops");
                    let _ = request.reply.send(result);
                    return;
                }
            };
        }
        let _ = request.reply.send(result);
    }
}

impl Instance {
    fn new(state: &Rc<RefCell<CallState>>, source: &str) -> Result<Instance, LoadError> {
        let (name, version, memory_mb, config) = {
            let s = state.borrow();
            (
                s.manifest.name.clone(),
                s.manifest.version.clone(),
                s.manifest.limits.memory_mb,
                s.manifest.config.to_string(),
            )
        };
        let timeout_ms = state.borrow().manifest.limits.timeout_ms;
        let runtime = Runtime::new().map_err(|e| LoadError(e.to_string()))?;
        runtime.set_memory_limit(memory_mb as usize * 1024 * 1024);
        runtime.set_max_stack_size(MAX_STACK);
        let deadline: Rc<Cell<Option<Instant>>> = Rc::new(Cell::new(None));
        let watched = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            watched.get().is_some_and(|d| Instant::now() >= d)
        })));
        let context = Context::full(&runtime).map_err(|e| LoadError(e.to_string()))?;
        // Loading (top-level code) gets ten budgets: it runs once per (re)load.
        deadline.set(Some(
            Instant::now() + Duration::from_millis(u64::from(timeout_ms) * 10),
        ));
        let loaded = context.with(|ctx| -> Result<_, ScriptError> {
            let host = host_object(&ctx, state, &name, &version, &config)
                .map_err(|e| describe(&ctx, e))?;
            ctx.globals()
                .set("__host", host)
                .map_err(|e| describe(&ctx, e))?;
            let ctx_object: Object = ctx.eval(PRELUDE).map_err(|e| describe(&ctx, e))?;
            let module = Module::declare(ctx.clone(), format!("{name}/index.js"), source)
                .map_err(|e| describe(&ctx, e))?;
            let (module, promise) = module.eval().map_err(|e| describe(&ctx, e))?;
            promise.finish::<Value>().map_err(|e| describe(&ctx, e))?;
            let namespace = module.namespace().map_err(|e| describe(&ctx, e))?;
            Ok((
                Persistent::save(&ctx, namespace),
                Persistent::save(&ctx, ctx_object),
            ))
        });
        deadline.set(None);
        let (module, ctx_object) = loaded.map_err(|e| LoadError(format!("index.js: {e}")))?;
        let instance = Instance {
            module,
            ctx_object,
            context,
            runtime,
            deadline,
        };
        if instance.exports().is_empty() {
            return Err(LoadError(
                "index.js exports none of onEvent, transform, webhookPayload".into(),
            ));
        }
        Ok(instance)
    }

    fn exports(&self) -> Vec<Export> {
        self.context.with(|ctx| {
            let Ok(ns) = self.module.clone().restore(&ctx) else {
                return Vec::new();
            };
            [Export::OnEvent, Export::Transform, Export::WebhookPayload]
                .into_iter()
                .filter(|e| ns.get::<_, Function>(e.js_name()).is_ok())
                .collect()
        })
    }

    fn call(
        &self,
        state: &Rc<RefCell<CallState>>,
        export: Export,
        args: &[String],
    ) -> Result<CallOutput, CallError> {
        let (timeout_ms, memory_mb) = {
            let mut s = state.borrow_mut();
            s.may_publish = export == Export::OnEvent;
            s.publishes.clear();
            s.refused = 0;
            s.kv.begin();
            (s.manifest.limits.timeout_ms, s.manifest.limits.memory_mb)
        };
        self.deadline.set(Some(
            Instant::now() + Duration::from_millis(u64::from(timeout_ms)),
        ));
        let result = self
            .context
            .with(|ctx| -> Result<Option<String>, ScriptError> {
                let ns = self
                    .module
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| describe(&ctx, e))?;
                let plugin_ctx = self
                    .ctx_object
                    .clone()
                    .restore(&ctx)
                    .map_err(|e| describe(&ctx, e))?;
                let f: Function = ns
                    .get(export.js_name())
                    .map_err(|_| ScriptError::NoExport(export.js_name()))?;
                let mut values: Vec<Value> = Vec::with_capacity(args.len() + 1);
                for a in args {
                    values.push(ctx.json_parse(a.as_str()).map_err(|e| describe(&ctx, e))?);
                }
                values.push(plugin_ctx.into_value());
                let returned: Value = f.call((Rest(values),)).map_err(|e| describe(&ctx, e))?;
                let value = match returned.as_promise() {
                    Some(p) => settle(&ctx, p)?,
                    None => returned,
                };
                if value.is_undefined() {
                    return Ok(None);
                }
                ctx.json_stringify(value)
                    .map_err(|e| describe(&ctx, e))
                    .map(|s| s.and_then(|s| s.to_string().ok()))
            });
        let timed_out = self.deadline.take().is_some_and(|d| Instant::now() >= d);
        let mut s = state.borrow_mut();
        match result {
            Ok(value) => {
                let kv_writes = s.kv.commit();
                Ok(CallOutput {
                    value,
                    publishes: std::mem::take(&mut s.publishes),
                    kv_writes,
                    refused: s.refused,
                })
            }
            Err(error) => {
                s.kv.rollback();
                s.publishes.clear();
                if timed_out {
                    Err(CallError::Timeout(timeout_ms))
                } else if matches!(&error, ScriptError::Thrown(m) if m.contains("out of memory")) {
                    self.runtime.run_gc();
                    Err(CallError::OutOfMemory(memory_mb))
                } else {
                    Err(CallError::Exception(error.to_string()))
                }
            }
        }
    }
}

/// Runs the job queue until `p` settles (the interrupt handler bounds the time).
fn settle<'js>(ctx: &Ctx<'js>, p: &Promise<'js>) -> Result<Value<'js>, ScriptError> {
    match p.finish::<Value>() {
        Ok(v) => Ok(v),
        Err(rquickjs::Error::WouldBlock) => Err(ScriptError::NeverSettles),
        Err(e) => Err(describe(ctx, e)),
    }
}

/// A failure as text, with the exception's message and stack when there is one.
fn describe(ctx: &Ctx<'_>, e: rquickjs::Error) -> ScriptError {
    let text = match CaughtError::from_error(ctx, e) {
        CaughtError::Exception(ex) => {
            let message = ex.message().unwrap_or_default();
            match ex.stack().filter(|s| !s.trim().is_empty()) {
                Some(stack) => format!("{message}\n{stack}"),
                None => message,
            }
        }
        CaughtError::Value(v) => ctx
            .json_stringify(v)
            .ok()
            .flatten()
            .and_then(|s| s.to_string().ok())
            .map(|s| format!("threw {s}"))
            .unwrap_or_else(|| "threw a value".into()),
        CaughtError::Error(rquickjs::Error::Allocation) => "out of memory".into(),
        CaughtError::Error(e) => e.to_string(),
    };
    ScriptError::Thrown(truncate(text))
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(
            format!(
                r#"{{"name":"t","version":"1","subscribe":[">"],"publish":["audit.*"],
                    "limits":{{"memoryMb":8,"timeoutMs":100}}{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    async fn load(source: &str) -> JsPlugin {
        JsPlugin::load(&manifest(""), source.into(), BTreeMap::new())
            .await
            .unwrap()
    }

    const EVENT: &str = r#"{"id":"e1","type":"project.created","payload":{"n":1}}"#;

    #[tokio::test]
    async fn on_event_publishes_and_writes_the_store() {
        let p = load(
            r#"export function onEvent(e, ctx) {
                 ctx.kv.set("count", (ctx.kv.get("count") ?? 0) + 1);
                 ctx.publish("audit.seen", { id: e.id, n: e.payload.n });
               }"#,
        )
        .await;
        assert_eq!(p.export_names(), ["onEvent"]);
        let out = p.call(Export::OnEvent, vec![EVENT.into()]).await.unwrap();
        assert_eq!(
            out.publishes,
            [("audit.seen".into(), r#"{"id":"e1","n":1}"#.into())]
        );
        assert_eq!(out.kv_writes, [("count".into(), Some("1".into()))]);
        let out = p.call(Export::OnEvent, vec![EVENT.into()]).await.unwrap();
        assert_eq!(out.kv_writes, [("count".into(), Some("2".into()))]);
    }

    #[tokio::test]
    async fn publishing_outside_the_manifest_throws_and_is_counted() {
        let p = load(
            r#"export function onEvent(e, ctx) {
                 try { ctx.publish("billing.charged", {}); } catch (err) { ctx.publish("audit.refused", String(err.message)); }
               }"#,
        )
        .await;
        let out = p.call(Export::OnEvent, vec![EVENT.into()]).await.unwrap();
        assert_eq!(out.refused, 1);
        assert_eq!(out.publishes.len(), 1);
        assert!(out.publishes[0].1.contains("billing.charged"));
    }

    #[tokio::test]
    async fn an_infinite_loop_is_interrupted_and_the_plugin_keeps_working() {
        let p = load(
            r#"let calls = 0;
               export function onEvent(e) { calls++; if (e.payload.n === 1) { for (;;) {} } return calls; }"#,
        )
        .await;
        let started = Instant::now();
        let err = p
            .call(Export::OnEvent, vec![EVENT.into()])
            .await
            .unwrap_err();
        assert_eq!(err, CallError::Timeout(100));
        assert!(started.elapsed() < Duration::from_secs(5));
        let out = p
            .call(Export::OnEvent, vec![r#"{"payload":{"n":2}}"#.into()])
            .await
            .unwrap();
        // A fresh runtime: module state starts over.
        assert_eq!(out.value.as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn memory_exhaustion_is_contained() {
        let p = load(
            r#"export function onEvent(e) {
                 if (e.payload.n === 1) { const a = []; for (;;) a.push(new Array(100000).fill(7)); }
                 return "ok";
               }"#,
        )
        .await;
        let err = p
            .call(Export::OnEvent, vec![EVENT.into()])
            .await
            .unwrap_err();
        assert_eq!(err, CallError::OutOfMemory(8));
        let out = p
            .call(Export::OnEvent, vec![r#"{"payload":{"n":2}}"#.into()])
            .await
            .unwrap();
        assert_eq!(out.value.as_deref(), Some("\"ok\""));
    }

    #[tokio::test]
    async fn exceptions_undo_key_value_writes_and_no_import_is_possible() {
        let p = load(
            r#"export function onEvent(e, ctx) { ctx.kv.set("k", 1); throw new Error("boom"); }
               export async function transform(e) { e.payload.seen = true; return e; }"#,
        )
        .await;
        let err = p
            .call(Export::OnEvent, vec![EVENT.into()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CallError::Exception(m) if m.contains("boom")),
            "{err}"
        );
        let out = p.call(Export::Transform, vec![EVENT.into()]).await.unwrap();
        assert!(out.value.unwrap().contains(r#""seen":true"#));
        assert!(out.kv_writes.is_empty());

        let err = JsPlugin::load(
            &manifest(""),
            r#"import { readFile } from "std"; export function onEvent() {}"#.into(),
            BTreeMap::new(),
        )
        .await
        .unwrap_err();
        assert!(err.0.contains("std"), "{err}");
        let err = JsPlugin::load(&manifest(""), "export const x = 1;".into(), BTreeMap::new())
            .await
            .unwrap_err();
        assert!(err.0.contains("exports none"), "{err}");
    }
}
