//! The one step that differs between the owning readers and the view reader: [`Decoder`], with
//! [`Decode`] (features decoded into [`Array3`]) and [`ViewDecoder`] (features left in the file as
//! [`ArrayView`]s).

use std::borrow::Cow;

use super::context::{Ctx, numeric, python_shape};
use super::error::MoseiError;
use super::types::{Array3, FeatureArray};
use crate::pickle::{ArrayData, NdArray, PickleError, Value, numpy};
use crate::view::{ArrayView, NonFinite};

/// The part of reading that differs between [`read_mosei_file`] and [`read_mosei_view`]: how a
/// checked `(N, L, D)` feature array becomes the result's array type, and how arrays that are read
/// in full (labels, ids, lengths) get decoded. Everything else is shared.
///
/// [`read_mosei_file`]: super::read_mosei_file
/// [`read_mosei_view`]: super::read_mosei_view
pub(super) trait Decoder {
    type Array: FeatureArray;

    /// The features of a numeric 3-d `array` (`shape` already checked), with their non-finite values
    /// counted. Non-numeric data is `UnsupportedDtype`, through [`numeric`].
    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(Self::Array, NonFinite), MoseiError>;

    /// `value` with its array decoded, for keys whose contents are read.
    fn decoded(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError>;
}

/// The owning readers: everything is decoded by [`pickle::load`]; features are zeroed in place.
///
/// [`pickle::load`]: crate::pickle::load
pub(super) struct Decode;

impl Decoder for Decode {
    type Array = Array3;

    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(Array3, NonFinite), MoseiError> {
        let mut data = numeric(ctx, key, array)?;
        let mut counts = NonFinite::default();
        for x in &mut data {
            *x = counts.repair(*x);
        }
        Ok((Array3 { shape, data }, counts))
    }

    fn decoded(&mut self, _ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError> {
        Ok(value)
    }
}

/// The view reader: float arrays come from [`pickle::load_view`] as [`ArrayData::Raw`] buffers.
///
/// [`pickle::load_view`]: crate::pickle::load_view
pub(super) struct ViewDecoder<'a, P> {
    /// [`pickle::PickleView::buffers`]; each is taken by the one array that refers to it.
    ///
    /// [`pickle::PickleView::buffers`]: crate::pickle::PickleView::buffers
    pub(super) buffers: Vec<Cow<'a, [u8]>>,
    /// Feature bytes scanned so far, for `progress`.
    pub(super) scanned: u64,
    pub(super) progress: P,
}

impl<'a, P> ViewDecoder<'a, P> {
    /// The bytes of a raw array: a slice of the map is shared, an owned buffer is moved out (every
    /// buffer belongs to exactly one array of the tree).
    fn take(&mut self, index: usize) -> Cow<'a, [u8]> {
        match self.buffers.get_mut(index) {
            Some(Cow::Borrowed(bytes)) => Cow::Borrowed(*bytes),
            Some(Cow::Owned(bytes)) => Cow::Owned(std::mem::take(bytes)),
            None => Cow::Borrowed(&[]),
        }
    }
}

/// An array whose data do not match its shape after all: unreachable after the pickle reader's
/// checks, reported rather than assumed.
fn inconsistent(ctx: &Ctx<'_>, dtype: &str, shape: &[usize]) -> MoseiError {
    MoseiError::Pickle {
        file: ctx.file.to_string(),
        source: PickleError::BadArray { pos: 0, reason: format!("split '{}': the data of a {dtype} array of shape {} do not match it", ctx.split, python_shape(shape)) },
    }
}

impl<'a, P: FnMut(u64)> Decoder for ViewDecoder<'a, P> {
    type Array = ArrayView<'a>;

    fn features(&mut self, ctx: &Ctx<'_>, key: &'static str, array: NdArray, shape: [usize; 3]) -> Result<(ArrayView<'a>, NonFinite), MoseiError> {
        let dtype = array.dtype;
        let view = match array.data {
            ArrayData::Raw(raw) => {
                let bytes = self.take(raw.index);
                ArrayView::new(shape, dtype, raw.fortran_order, bytes)
            }
            // Integer or bool features: widened to f32 as by the owning reader (owned, C order).
            _ => ArrayView::from_f32(shape, &numeric(ctx, key, array)?),
        };
        let view = view.ok_or_else(|| inconsistent(ctx, &dtype.to_string(), &shape))?;
        let (base, progress) = (self.scanned, &mut self.progress);
        let counts = view.count_nonfinite(|done| progress(base + done));
        self.scanned += view.bytes().len() as u64;
        Ok((view, counts))
    }

    fn decoded(&mut self, ctx: &Ctx<'_>, value: Value) -> Result<Value, MoseiError> {
        let Value::NdArray(mut array) = value else {
            return Ok(value);
        };
        if let ArrayData::Raw(raw) = array.data {
            let bytes = self.take(raw.index);
            let data = numpy::decode_elements(&array.dtype, raw.len, &bytes, 0).map_err(|source| MoseiError::Pickle { file: ctx.file.to_string(), source })?;
            array.data = if raw.fortran_order { numpy::reorder_fortran(data, &array.shape) } else { data };
        }
        Ok(Value::NdArray(array))
    }
}
