import DiffuseEngine
import Foundation
import XCTest

/// The fixture file written by scripts/make_diffusion_fixtures.py.
func fixture() throws -> SafeTensorsFile {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    return try SafeTensorsFile(path: dir.appendingPathComponent("schedulers.safetensors").path)
}

/// Asserts |a_i − b_i| ≤ atol + rtol·|b_i| for every i, reporting the worst element.
func assertClose(_ a: [Double], _ b: [Double], rtol: Double, atol: Double = 0, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard a.count == b.count else { return XCTFail("\(what): \(a.count) values, expected \(b.count)", file: file, line: line) }
    guard let worst = a.indices.max(by: { i, j in
        abs(a[i] - b[i]) - rtol * abs(b[i]) < abs(a[j] - b[j]) - rtol * abs(b[j])
    }) else { return }
    XCTAssertLessThanOrEqual(abs(a[worst] - b[worst]), atol + rtol * abs(b[worst]),
                             "\(what): element \(worst) is \(a[worst]), expected \(b[worst])", file: file, line: line)
}

/// max |a − b| / max |b|: the error relative to the largest expected value.
func relativeToMax(_ a: Tensor, _ b: Tensor) -> Double {
    precondition(a.shape == b.shape, "shapes \(a.shape) and \(b.shape)")
    let error = zip(a.scalars, b.scalars).map { Double(abs($0 - $1)) }.max() ?? 0
    return error / Double(b.scalars.map(abs).max() ?? 1)
}
