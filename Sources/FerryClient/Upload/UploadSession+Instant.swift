import FerryInstant
import Foundation
import HTTPTypes

/// Instant upload (docs/instant-upload.md): a file the server already holds is announced by its
/// SHA-256 at creation, and the server's challenge is answered from a few of its ranges instead
/// of sending it.
extension UploadSession {
    /// Hashes the file for its announcement, once, off the cooperative pool, when the server
    /// offers instant upload and the file is small enough (`UploadOptions.instantUploadLimit`).
    /// A creation that carries the whole file announces it too: no challenge can come (it has
    /// bytes), but the server checks the digest and indexes the file for later forwards. A file
    /// that cannot be read whole is simply not announced.
    mutating func prepareAnnouncement() async {
        guard announcement == nil, machine.announcesDigest, machine.capabilities.instantUpload, let length else { return }
        let began = clock.now
        announcement = await FileRange.digest(.sha256, path: upload.path, range: 0..<length)
        trace("hashed \(length) bytes for the announcement in \(began.duration(to: clock.now))")
    }

    /// Answers the challenge of the upload just created at `url`; the offset the server
    /// acknowledged: the whole length when the proof completed the upload, else 0 (the upload is
    /// an ordinary empty one and the bytes follow as usual).
    mutating func answer(_ field: String, at url: URL) async -> Int64 {
        guard let length, let challenge = InstantChallenge(fieldValue: field), challenge.isValid(forLength: length) else {
            trace("ignored a malformed challenge: \(field)")
            return 0
        }
        let path = upload.path
        let ranges = challenge.ranges
        guard let bytes = try? await BlockingIO.run({ isCancelled in
            try ranges.map { range in
                var bytes: [UInt8] = []
                try FileRange.read(path: path, range: range.lowerBound..<(range.upperBound + 1), isCancelled: isCancelled) { bytes += $0 }
                return bytes
            }
        }), let proof = await InstantProof.answer(challenge, length: length, read: { range in bytes[ranges.firstIndex(of: range) ?? 0] })
        else { return 0 }
        var request = self.request(.patch, url)
        request.headerFields[.uploadOffset] = "0"
        switch upload.options.dialect {
        case .tus:
            request.headerFields[.contentType] = "application/offset+octet-stream"
        case .rufh:
            request.headerFields[.contentType] = "application/partial-upload"
            request.headerFields[.uploadComplete] = "?0"
        }
        request.headerFields[.contentLength] = "0"
        request.headerFields[.ferryProof] = InstantProof.fieldValue(proof)
        upload.counters.withLock { $0.requests += 1 }
        let began = clock.now
        let outcome = await runner.run(request, goodput: nil)
        guard case .response(let response) = outcome, response.status.kind == .successful, response.fields.uploadOffset == length else {
            trace("PATCH proof failed after \(began.duration(to: clock.now)): \(outcome.summary); sending the bytes")
            return 0
        }
        trace("PATCH proof -> \(response.status.code) offset \(length) in \(began.duration(to: clock.now)): stored instantly")
        finalFields = response.fields
        storedInstantly = true
        upload.counters.withLock { $0.storedInstantly = true }
        return length
    }
}

extension RequestRunner.Outcome {
    /// One line for a trace.
    var summary: String {
        switch self {
        case .response(let response): "\(response.status.code) \(response.fields.ferryError ?? "")"
        case .failure(let failure): "\(failure)"
        }
    }
}
