//! The `ctx` object a plugin's code sees: [`PRELUDE`] builds it from the native functions of
//! `host_object`, which act on the `CallState` of the call under way, then hides them.
//! `ctx.publish` is checked against the manifest's `publish` patterns and allowed in `onEvent`
//! only; it and `ctx.kv.set` only record their effects, which the host applies after a
//! successful call.

use std::cell::RefCell;
use std::rc::Rc;

use rquickjs::{Ctx, Exception, Function, Object};

use crate::plugin::kv::{KvError, KvMap};
use crate::plugin::manifest::Manifest;

/// Most events one call may publish.
pub const MAX_PUBLISHES_PER_CALL: usize = 100;

/// The code that builds `ctx` from the host's native functions, then hides them.
pub const PRELUDE: &str = r#"
(() => {
  const n = globalThis.__host;
  delete globalThis.__host;
  const text = (args) => args.map((a) => typeof a === "string" ? a : JSON.stringify(a)).join(" ");
  const at = (level) => (...args) => n.log(level, text(args));
  const log = at("info");
  log.debug = at("debug"); log.info = at("info"); log.warn = at("warn"); log.error = at("error");
  const freeze = (v) => {
    if (v && typeof v === "object") { Object.values(v).forEach(freeze); Object.freeze(v); }
    return v;
  };
  const kv = Object.freeze({
    get(key) { const v = n.kvGet(String(key)); return v === undefined ? undefined : JSON.parse(v); },
    set(key, value) { n.kvSet(String(key), JSON.stringify(value === undefined ? null : value)); },
    delete(key) { n.kvDelete(String(key)); },
    keys(prefix) { return JSON.parse(n.kvKeys(prefix === undefined ? "" : String(prefix))); },
  });
  const ctx = Object.freeze({
    plugin: Object.freeze({ name: n.name, version: n.version }),
    config: freeze(JSON.parse(n.config)),
    log,
    kv,
    publish(type, payload) {
      n.publish(String(type), JSON.stringify(payload === undefined ? null : payload));
    },
  });
  return ctx;
})()
"#;

/// What the native functions behind `ctx` share during a call.
pub(super) struct CallState {
    pub(super) manifest: Manifest,
    pub(super) kv: KvMap,
    /// Whether `ctx.publish` is allowed in the current call (`onEvent` only).
    pub(super) may_publish: bool,
    pub(super) publishes: Vec<(String, String)>,
    pub(super) refused: u64,
}

/// The native functions the prelude wraps into `ctx`.
pub(super) fn host_object<'js>(
    ctx: &Ctx<'js>,
    state: &Rc<RefCell<CallState>>,
    name: &str,
    version: &str,
    config: &str,
) -> rquickjs::Result<Object<'js>> {
    let host = Object::new(ctx.clone())?;
    host.set("name", name)?;
    host.set("version", version)?;
    host.set("config", if config == "null" { "{}" } else { config })?;

    let s = state.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |level: String, text: String| {
            let s = s.borrow();
            let plugin = s.manifest.name.as_str();
            match level.as_str() {
                "debug" => tracing::debug!(plugin, "{text}"),
                "warn" => tracing::warn!(plugin, "{text}"),
                "error" => tracing::error!(plugin, "{text}"),
                _ => tracing::info!(plugin, "{text}"),
            }
        })?,
    )?;

    let s = state.clone();
    host.set(
        "publish",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, event_type: String, payload: String| -> rquickjs::Result<()> {
                let mut s = s.borrow_mut();
                if !s.may_publish {
                    return Err(Exception::throw_message(
                        &ctx,
                        "ctx.publish is only available in onEvent",
                    ));
                }
                if !s.manifest.may_publish(&event_type) {
                    s.refused += 1;
                    return Err(Exception::throw_message(
                        &ctx,
                        &format!(
                            "ctx.publish refused: `{event_type}` is not in the manifest's publish patterns"
                        ),
                    ));
                }
                if s.publishes.len() >= MAX_PUBLISHES_PER_CALL {
                    return Err(Exception::throw_message(
                        &ctx,
                        &format!("ctx.publish refused: at most {MAX_PUBLISHES_PER_CALL} events per call"),
                    ));
                }
                s.publishes.push((event_type, payload));
                Ok(())
            },
        )?,
    )?;

    let s = state.clone();
    host.set(
        "kvGet",
        Function::new(ctx.clone(), move |key: String| s.borrow().kv.get(&key))?,
    )?;
    let s = state.clone();
    host.set(
        "kvSet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String, value: String| -> rquickjs::Result<()> {
                s.borrow_mut()
                    .kv
                    .set(key, Some(value))
                    .map_err(|e: KvError| Exception::throw_message(&ctx, &e.to_string()))
            },
        )?,
    )?;
    let s = state.clone();
    host.set(
        "kvDelete",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, key: String| -> rquickjs::Result<()> {
                s.borrow_mut()
                    .kv
                    .set(key, None)
                    .map_err(|e: KvError| Exception::throw_message(&ctx, &e.to_string()))
            },
        )?,
    )?;
    let s = state.clone();
    host.set(
        "kvKeys",
        Function::new(ctx.clone(), move |prefix: String| {
            serde_json::to_string(&s.borrow().kv.keys(&prefix)).unwrap_or_else(|_| "[]".into())
        })?,
    )?;
    Ok(host)
}
