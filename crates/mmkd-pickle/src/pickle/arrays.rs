//! numpy arrays and dtypes: BUILD's `__setstate__` for both, protocol 5's `_frombuffer`, and the
//! checks and decoding (or, in [`Mode::View`], the borrowing) of array data they share.

use std::borrow::Cow;

use super::arena::{ArrayNode, ArrayStore, Id, NONE_ID, Node};
use super::globals::Callable;
use super::machine::Machine;
use super::machine::Mode;
use super::numpy::{self, DtypeState};
use super::{DType, DTypeKind, PickleError, Result, Value};

impl<'a> Machine<'a> {
    /// BUILD: completes an array or dtype that `_reconstruct` or `numpy.dtype` created.
    pub(super) fn build(&mut self, target: Id, state: Id) -> Result<()> {
        match self.node(target) {
            Node::Array(_) => self.build_array(target, state),
            Node::Dtype(_) => self.build_dtype(target, state),
            // An OrderedDict's instance __dict__: nothing to set in practice.
            Node::Dict(_) if matches!(self.node(state), Node::None) || matches!(self.node(state), Node::Dict(d) if d.is_empty()) => Ok(()),
            _ => Err(self.wrong_type("a numpy array or dtype to BUILD", target)),
        }
    }

    /// `ndarray.__setstate__((version, shape, dtype, is_fortran, raw))`; the oldest format has no version.
    fn build_array(&mut self, target: Id, state: Id) -> Result<()> {
        let bad = |me: &Self, reason: &str| PickleError::BadArray { pos: me.op_pos, reason: reason.to_string() };
        let Node::Tuple(items) = self.node(state) else {
            return Err(bad(self, "array state must be a tuple"));
        };
        let (shape, dtype, fortran, raw) = match items.as_slice() {
            [_, shape, dtype, fortran, raw] | [shape, dtype, fortran, raw] => (*shape, *dtype, *fortran, *raw),
            _ => return Err(bad(self, "array state must have 4 or 5 items")),
        };
        let shape = self.shape(shape)?;
        let Node::Dtype(dtype) = self.node(dtype) else {
            return Err(bad(self, "array state has no dtype"));
        };
        let dtype = *dtype;
        let fortran = self.int(fortran).ok_or_else(|| bad(self, "is_fortran must be a bool"))? != 0;
        let data = if dtype.kind == DTypeKind::Object {
            self.object_elements(&shape, raw)?
        } else {
            if self.bytes(raw).is_none() {
                return Err(bad(self, "array data must be bytes"));
            }
            self.array_store(&dtype, &shape, fortran, raw)?
        };
        if let Some(node) = self.nodes.get_mut(target) {
            *node = Node::Array(Box::new(ArrayNode { shape, dtype, data }));
        }
        Ok(())
    }

    /// An object array's elements: a list of exactly as many objects as the shape holds.
    fn object_elements(&mut self, shape: &[usize], raw: Id) -> Result<ArrayStore<'a>> {
        let (Node::List(elements) | Node::Tuple(elements)) = self.node(raw) else {
            return Err(PickleError::BadArray { pos: self.op_pos, reason: "an object array's data must be a list".to_string() });
        };
        let count = numpy::element_count(shape, self.op_pos)?;
        if elements.len() != count {
            return Err(PickleError::BadArray { pos: self.op_pos, reason: format!("shape {shape:?} needs {count} objects, found {}", elements.len()) });
        }
        let elements = elements.clone();
        self.charge(elements.len() * size_of::<Id>())?;
        Ok(ArrayStore::Objects(elements))
    }

    /// `dtype.__setstate__((3, '<', None, None, None, elsize, alignment, flags[, metadata]))`.
    fn build_dtype(&mut self, target: Id, state: Id) -> Result<()> {
        let Node::Dtype(mut dtype) = *self.node(target) else {
            return Err(self.wrong_type("a dtype", target));
        };
        let unsupported = |reason| PickleError::UnsupportedDtype { dtype: dtype.to_string(), reason };
        let Node::Tuple(items) = self.node(state) else {
            return Err(unsupported("dtype state must be a tuple"));
        };
        if !(8..=9).contains(&items.len()) {
            return Err(unsupported("only dtype state versions 3 and 4 (numpy >= 1.0) are supported"));
        }
        let item = |i: usize| items.get(i).copied().unwrap_or(NONE_ID);
        let byte_order = self.text(item(1)).ok_or_else(|| unsupported("byte order must be a string"))?;
        let structured = (2..=4).any(|i| !matches!(self.node(item(i)), Node::None));
        let elsize = self.int(item(5)).ok_or_else(|| unsupported("element size must be an int"))?;
        numpy::apply_dtype_state(&mut dtype, DtypeState { byte_order: &byte_order, structured, elsize })?;
        if let Some(node) = self.nodes.get_mut(target) {
            *node = Node::Dtype(dtype);
        }
        Ok(())
    }

    /// Protocol 5: `_frombuffer(buffer, dtype, shape, order)`.
    pub(super) fn call_frombuffer(&mut self, args: &[Id]) -> Result<Id> {
        let function = Callable::FromBuffer;
        let [buffer, dtype, shape, order] = args else {
            return Err(self.bad_call(function, format!("expects 4 arguments, got {}", args.len())));
        };
        let Node::Dtype(dtype) = self.node(*dtype) else {
            return Err(self.bad_call(function, "the second argument must be a dtype"));
        };
        let dtype = *dtype;
        if dtype.kind == DTypeKind::Object {
            return Err(self.bad_call(function, "object arrays cannot come from a buffer"));
        }
        let shape = self.shape(*shape)?;
        let fortran = match self.text(*order).as_deref() {
            Some("C") => false,
            Some("F") => true,
            _ => return Err(self.bad_call(function, "order must be 'C' or 'F'")),
        };
        let buffer = *buffer;
        if self.bytes(buffer).is_none() {
            return Err(self.bad_call(function, "the buffer must be bytes"));
        }
        let data = self.array_store(&dtype, &shape, fortran, buffer)?;
        self.alloc(Node::Array(Box::new(ArrayNode { shape, dtype, data })))
    }

    /// A shape tuple: non-negative ints, at most numpy's maximum number of dimensions.
    fn shape(&self, id: Id) -> Result<Vec<usize>> {
        let bad = |reason: String| PickleError::BadArray { pos: self.op_pos, reason };
        let (Node::Tuple(dims) | Node::List(dims)) = self.node(id) else {
            return Err(bad(format!("the shape must be a tuple, found {}", self.node(id).type_name())));
        };
        if dims.len() > numpy::MAX_DIMS {
            return Err(bad(format!("{} dimensions (numpy allows {})", dims.len(), numpy::MAX_DIMS)));
        }
        dims.iter()
            .map(|&d| {
                let v = self.int(d).ok_or_else(|| bad("shape entries must be ints".into()))?;
                usize::try_from(v).map_err(|_| bad(format!("negative dimension {v}")))
            })
            .collect()
    }

    /// The elements of an array from the bytes object `raw`: decoded, charging the result against the
    /// data budget first, or in [`Mode::View`] (float arrays only) checked and kept as they are.
    fn array_store(&mut self, dtype: &DType, shape: &[usize], fortran: bool, raw: Id) -> Result<ArrayStore<'a>> {
        let count = numpy::element_count(shape, self.op_pos)?;
        if self.mode == Mode::View && dtype.kind == DTypeKind::Float {
            return self.raw_store(dtype, count, fortran, raw);
        }
        let per_element = match dtype.kind {
            DTypeKind::Float => size_of::<f32>(),
            DTypeKind::Int | DTypeKind::UInt => size_of::<i64>(),
            DTypeKind::Bool => size_of::<bool>(),
            DTypeKind::Bytes | DTypeKind::Unicode => size_of::<String>() + dtype.itemsize,
            DTypeKind::Object => size_of::<Value>(),
        };
        // A Fortran-order array briefly exists twice while it is reordered.
        let copies = if fortran { 2 } else { 1 };
        // Only charge what the buffer can actually hold: a count the data cannot back fails below.
        let backed = count.min(self.bytes(raw).map_or(0, <[u8]>::len));
        self.charge(backed.saturating_mul(per_element).saturating_mul(copies))?;
        let data = numpy::decode_elements(dtype, count, self.bytes(raw).unwrap_or_default(), self.op_pos)?;
        Ok(ArrayStore::Plain(if fortran { numpy::reorder_fortran(data, shape) } else { data }))
    }

    /// [`Mode::View`]'s float elements: checked like decoded ones, then kept as the stream's bytes.
    fn raw_store(&mut self, dtype: &DType, count: usize, fortran: bool, raw: Id) -> Result<ArrayStore<'a>> {
        // A slice of the input costs nothing; bytes the stream had to encode (protocol 2) are
        // copied, which is charged like any derived data.
        let owned_len = match self.node(raw) {
            Node::Bytes(b) => {
                numpy::check_data_len(dtype, count, b, self.op_pos)?;
                matches!(b, Cow::Owned(_)).then_some(b.len())
            }
            _ => {
                return Err(PickleError::BadArray { pos: self.op_pos, reason: "array data must be bytes".into() });
            }
        };
        if let Some(len) = owned_len {
            self.charge(len)?;
        }
        let bytes = match self.node(raw) {
            Node::Bytes(b) => b.clone(),
            _ => Cow::Borrowed(&[][..]),
        };
        Ok(ArrayStore::Raw { bytes, fortran })
    }
}
