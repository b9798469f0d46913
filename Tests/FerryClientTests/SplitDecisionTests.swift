import HTTPTypes
import Testing

@testable import FerryClient

/// When the adaptive upload splits a file at all: only where the server joins partials of
/// deferred length without copying them (`Ferry-Concatenation: copy` from object storage).
@Suite struct SplitDecisionTests {
    static let all = "creation,creation-with-upload,creation-defer-length,termination,concatenation,concatenation-unfinished"

    @Test(arguments: [
        (all, nil, true),
        (all, "copy", false),
        (all, "link", true),
        ("creation,creation-defer-length,termination", nil, false),
        ("creation,concatenation", nil, false),
    ] as [(String, String?, Bool)])
    func splitsOnlyWhereJoiningIsFree(extensions: String, concatenation: String?, splits: Bool) {
        var fields: HTTPFields = [HTTPField.Name("Tus-Extension")!: extensions]
        if let concatenation { fields[HTTPField.Name("Ferry-Concatenation")!] = concatenation }
        #expect(AdaptiveParallelUpload.splits(on: UploadFields(fields)) == splits)
    }
}
