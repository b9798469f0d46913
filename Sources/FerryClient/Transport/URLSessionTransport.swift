import Foundation
import HTTPTypes
import Synchronization

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `UploadTransport` over URLSession (the default on Apple platforms; also works on Linux
/// through FoundationNetworking). A file range that is not the whole file is first copied to a
/// temporary file in 1 MiB blocks, off the cooperative pool, since URLSession uploads whole
/// files: memory stays bounded.
public final class URLSessionTransport: NSObject, UploadTransport, URLSessionTaskDelegate, @unchecked Sendable {
    // @unchecked Sendable: an NSObject (URLSession delegate); its only mutable state is `progress`, a Mutex.
    private var session: URLSession!
    private let progress = Mutex<[Int: @Sendable (Int64) -> Void]>([:])

    public init(configuration: URLSessionConfiguration = .ephemeral) {
        super.init()
        configuration.timeoutIntervalForRequest = 48 * 3600
        configuration.timeoutIntervalForResource = 48 * 3600
        session = URLSession(configuration: configuration, delegate: self, delegateQueue: nil)
    }

    public func invalidate() { session.finishTasksAndInvalidate() }

    public func send(_ request: TransportRequest, progress report: @escaping @Sendable (Int64) -> Void) async throws -> TransportResponse {
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method.rawValue
        for field in request.headerFields { urlRequest.addValue(field.value, forHTTPHeaderField: field.name.rawName) }
        var temporary: URL?
        defer { if let temporary { try? FileManager.default.removeItem(at: temporary) } }
        let make: (URLRequest, @escaping @Sendable (Data?, URLResponse?, (any Error)?) -> Void) -> URLSessionTask
        switch request.body {
        case nil:
            make = { self.session.dataTask(with: $0, completionHandler: $1) }
        case .bytes(let bytes):
            let data = Data(bytes)
            make = { self.session.uploadTask(with: $0, from: data, completionHandler: $1) }
        case .file(let path, let range):
            let file = try await Self.fileForUpload(path: path, range: range)
            temporary = file == URL(fileURLWithPath: path) ? nil : file
            make = { self.session.uploadTask(with: $0, fromFile: file, completionHandler: $1) }
        }
        let box = Mutex<URLSessionTask?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<TransportResponse, any Error>) in
                let task = make(urlRequest) { data, response, error in
                    if let error {
                        continuation.resume(throwing: error)
                        return
                    }
                    guard let http = response as? HTTPURLResponse else {
                        continuation.resume(throwing: URLError(.badServerResponse))
                        return
                    }
                    var fields = HTTPFields()
                    for (name, value) in http.allHeaderFields {
                        if let name = (name as? String).flatMap({ HTTPField.Name($0) }), let value = value as? String {
                            fields.append(HTTPField(name: name, value: value))
                        }
                    }
                    continuation.resume(with: Result {
                        TransportResponse(
                            status: try TransportResponse.status(code: http.statusCode),
                            headerFields: fields,
                            body: Array((data ?? Data()).prefix(65_536))
                        )
                    })
                }
                self.progress.withLock { $0[task.taskIdentifier] = report }
                box.withLock { $0 = task }
                task.resume()
                if Task.isCancelled { task.cancel() }
            }
        } onCancel: {
            box.withLock { $0 }?.cancel()
        }
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didSendBodyData bytesSent: Int64, totalBytesSent: Int64, totalBytesExpectedToSend: Int64) {
        let report = progress.withLock { $0[task.taskIdentifier] }
        report?(totalBytesSent)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        _ = progress.withLock { $0.removeValue(forKey: task.taskIdentifier) }
    }

    /// The whole file itself, or a temporary copy of the range (removed again if the copy fails).
    static func fileForUpload(path: String, range: Range<Int64>) async throws -> URL {
        let source = URL(fileURLWithPath: path)
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? -1
        if range.lowerBound == 0, range.upperBound == size { return source }
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("ferry-part-\(UUID().uuidString)")
        do {
            try await FileRange.copy(path: path, range: range, to: copy)
        } catch {
            try? FileManager.default.removeItem(at: copy)
            throw error
        }
        return copy
    }
}
