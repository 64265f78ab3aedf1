//! What the benchmarks report of repeated rounds.

/// The middle value (the mean of the two middle ones for an even count): a round disturbed
/// by the shared machine moves it less than it moves a mean.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[middle - 1] + values[middle]) / 2.0
    } else {
        values[middle]
    }
}
