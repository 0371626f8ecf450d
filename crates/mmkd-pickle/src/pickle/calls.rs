//! Globals and calls: GLOBAL and STACK_GLOBAL resolve names against the allow-list, and REDUCE and
//! NEWOBJ run the allow-listed function, each implemented here as a pure function of its arguments.
//! BUILD is dispatched from here too; what it does to arrays and dtypes is in [`super::arrays`].

use std::borrow::Cow;

use super::arena::{ArrayNode, ArrayStore, Id, NONE_ID, Node};
use super::globals::{self, Callable};
use super::machine::Machine;
use super::opcodes::{BUILD, GLOBAL, NEWOBJ, NEWOBJ_EX, REDUCE, STACK_GLOBAL};
use super::{ArrayData, DTypeKind, PickleError, Result, numpy, shown};

impl<'a> Machine<'a> {
    /// Runs `op` if it names a global, calls one, or is BUILD; `Ok(false)` for any other opcode.
    pub(super) fn call_op(&mut self, op: u8) -> Result<bool> {
        match op {
            GLOBAL => {
                let module = self.line("GLOBAL")?;
                let name = self.line("GLOBAL")?;
                let id = self.resolve(module, name)?;
                self.push(id)?;
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let id = match (self.node(module), self.node(name)) {
                    (Node::Str(m), Node::Str(n)) => {
                        let (m, n) = (m.clone(), n.clone());
                        self.resolve(&m, &n)?
                    }
                    (Node::Str(_), _) => return Err(self.wrong_type("a name string", name)),
                    _ => return Err(self.wrong_type("a module string", module)),
                };
                self.push(id)?;
            }
            REDUCE | NEWOBJ => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let result = self.call(callable, args)?;
                self.push(result)?;
            }
            NEWOBJ_EX => {
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let callable = self.pop()?;
                if !matches!(self.node(kwargs), Node::Dict(d) if d.is_empty()) {
                    return Err(self.wrong_type("no keyword arguments", kwargs));
                }
                let result = self.call(callable, args)?;
                self.push(result)?;
            }
            BUILD => {
                let state = self.pop()?;
                let target = self.top()?;
                self.build(target, state)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn resolve(&mut self, module: &str, name: &str) -> Result<Id> {
        match globals::position(module, name) {
            Some(index) => self.alloc(Node::Global(index as u8)),
            None => Err(PickleError::ForbiddenGlobal { module: shown(module), name: shown(name) }),
        }
    }

    pub(super) fn bad_call(&self, callable: Callable, reason: impl Into<String>) -> PickleError {
        PickleError::BadCall { callable: globals::callable_name(callable), pos: self.op_pos, reason: reason.into() }
    }

    fn call(&mut self, callable: Id, args: Id) -> Result<Id> {
        let function = match self.node(callable) {
            Node::Global(index) => globals::callable(*index),
            _ => None,
        };
        let Some(function) = function else {
            return Err(self.wrong_type("an allow-listed callable", callable));
        };
        let Node::Tuple(all_args) = self.node(args) else {
            return Err(self.wrong_type("an argument tuple", args));
        };
        // No allow-listed function takes more than four arguments: copy those, never the whole tuple
        // (a hostile stream could pass one huge memoized tuple to many calls).
        if all_args.len() > 4 {
            return Err(self.bad_call(function, format!("too many arguments ({})", all_args.len())));
        }
        let args: Vec<Id> = all_args.clone();
        match function {
            Callable::Reconstruct => self.call_reconstruct(&args),
            Callable::NdArrayType => Err(self.bad_call(function, "only usable as the first argument of _reconstruct")),
            Callable::Dtype => self.call_dtype(&args),
            Callable::Scalar => self.call_scalar(&args),
            Callable::FromBuffer => self.call_frombuffer(&args),
            Callable::CodecsEncode => self.call_codecs_encode(&args),
            Callable::OrderedDict => {
                if !args.is_empty() {
                    return Err(self.bad_call(function, "only the empty constructor is supported (items follow with SETITEMS)"));
                }
                self.alloc(Node::Dict(Vec::new()))
            }
            Callable::ByteArray | Callable::Bytes => self.call_bytes(function, &args),
            Callable::Set => self.call_set(&args),
        }
    }

    /// `_reconstruct(ndarray, shape, typecode)`. numpy passes `(ndarray, (0,), b'b')`; the real shape
    /// and dtype arrive with BUILD, so this is a placeholder for it to fill.
    fn call_reconstruct(&mut self, args: &[Id]) -> Result<Id> {
        let is_ndarray = |id: Id| match self.node(id) {
            Node::Global(i) => globals::callable(*i) == Some(Callable::NdArrayType),
            _ => false,
        };
        if !args.first().is_some_and(|&a| is_ndarray(a)) {
            return Err(self.bad_call(Callable::Reconstruct, "the first argument must be numpy.ndarray (subclasses are not supported)"));
        }
        let placeholder = numpy::parse_dtype_spec("i1")?;
        self.alloc(Node::Array(Box::new(ArrayNode { shape: vec![0], dtype: placeholder, data: ArrayStore::Plain(ArrayData::I64(Vec::new())) })))
    }

    /// `numpy.dtype(spec, align, copy)`: only the spec matters; BUILD sets the byte order.
    fn call_dtype(&mut self, args: &[Id]) -> Result<Id> {
        let first = args.first().copied().unwrap_or(NONE_ID);
        let dtype = match (self.text(first), self.node(first)) {
            (Some(spec), _) => numpy::parse_dtype_spec(&spec)?,
            (None, Node::Dtype(d)) => *d,
            _ => {
                return Err(self.bad_call(Callable::Dtype, "expects a dtype string such as 'f4'"));
            }
        };
        self.alloc(Node::Dtype(dtype))
    }

    /// `scalar(dtype, raw)`: one element decoded like an array's.
    fn call_scalar(&mut self, args: &[Id]) -> Result<Id> {
        let function = Callable::Scalar;
        let [dtype, payload] = args else {
            return Err(self.bad_call(function, "expects (dtype, value)"));
        };
        let Node::Dtype(dtype) = self.node(*dtype) else {
            return Err(self.bad_call(function, "the first argument must be a dtype"));
        };
        let dtype = *dtype;
        if dtype.kind == DTypeKind::Object {
            return Ok(*payload); // An object scalar is the object itself.
        }
        let raw = self.bytes(*payload).ok_or_else(|| self.bad_call(function, "the value must be bytes"))?;
        let element = numpy::decode_elements(&dtype, 1, raw, self.op_pos)?;
        let node = scalar_node(element);
        self.alloc(node)
    }

    /// `_codecs.encode(text, encoding)`.
    fn call_codecs_encode(&mut self, args: &[Id]) -> Result<Id> {
        let function = Callable::CodecsEncode;
        let text = match args.first().map(|&a| self.node(a)) {
            Some(Node::Str(s)) => s.clone(),
            _ => return Err(self.bad_call(function, "the first argument must be a str")),
        };
        let encoding = match args.get(1) {
            Some(&e) => self.text(e).ok_or_else(|| self.bad_call(function, "the encoding must be a str"))?,
            None => Cow::Borrowed("utf-8"),
        };
        let bytes = self.encode(function, &text, &encoding)?;
        self.alloc(Node::Bytes(Cow::Owned(bytes)))
    }

    /// `bytes(...)` and `bytearray(...)`: empty, a copy of bytes, or encoded text.
    fn call_bytes(&mut self, function: Callable, args: &[Id]) -> Result<Id> {
        match args {
            [] => self.alloc(Node::Bytes(Cow::Borrowed(&[]))),
            // Bytes are never mutated here, so `bytearray(b)` can be `b` itself: no copy to pay for.
            [b] if matches!(self.node(*b), Node::Bytes(_)) => Ok(*b),
            [s, e] => {
                let text = match self.node(*s) {
                    Node::Str(s) => s.clone(),
                    _ => return Err(self.bad_call(function, "expects (str, encoding)")),
                };
                let encoding = self.text(*e).ok_or_else(|| self.bad_call(function, "the encoding must be a str"))?;
                let bytes = self.encode(function, &text, &encoding)?;
                self.alloc(Node::Bytes(Cow::Owned(bytes)))
            }
            _ => Err(self.bad_call(function, "expects no argument, bytes, or (str, encoding)")),
        }
    }

    /// `set(items)` and `frozenset(items)`.
    fn call_set(&mut self, args: &[Id]) -> Result<Id> {
        let function = Callable::Set;
        let source = match args {
            [] => None,
            [items] => Some(*items),
            _ => return Err(self.bad_call(function, "expects one list of items")),
        };
        let items = match source.map(|id| self.node(id)) {
            None => Vec::new(),
            Some(Node::List(v) | Node::Tuple(v) | Node::Set(v)) => {
                let v = v.clone();
                self.charge(v.len() * size_of::<Id>())?;
                v
            }
            Some(_) => return Err(self.bad_call(function, "expects a list of items")),
        };
        self.alloc(Node::Set(items))
    }

    /// `str.encode` for the encodings pickle writers use. Latin-1 is how protocol 2 carries bytes.
    fn encode(&mut self, function: Callable, text: &str, encoding: &str) -> Result<Vec<u8>> {
        self.charge(text.len())?;
        match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => {
                text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect::<Option<Vec<u8>>>().ok_or_else(|| self.bad_call(function, "text has characters outside Latin-1"))
            }
            "utf-8" | "utf8" => Ok(text.as_bytes().to_vec()),
            "ascii" if text.is_ascii() => Ok(text.as_bytes().to_vec()),
            other => Err(self.bad_call(function, format!("unsupported encoding '{}'", shown(other)))),
        }
    }
}

/// The arena object for a numpy scalar's one decoded element.
fn scalar_node<'a>(data: ArrayData) -> Node<'a> {
    match data {
        ArrayData::F32(v) => Node::Float(v.first().copied().map_or(0.0, f64::from)),
        ArrayData::I64(v) => Node::Int(v.first().copied().unwrap_or(0)),
        ArrayData::Bool(v) => Node::Bool(v.first().copied().unwrap_or(false)),
        ArrayData::Bytes(mut v) => Node::Bytes(Cow::Owned(v.pop().unwrap_or_default())),
        ArrayData::Str(mut v) => Node::Str(Cow::Owned(v.pop().unwrap_or_default())),
        ArrayData::Object(_) | ArrayData::Raw(_) => Node::None,
    }
}
