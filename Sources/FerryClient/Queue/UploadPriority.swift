/// Which members of an `UploadQueue` start first: a voice message before a photo before a video
/// before any other file. Voice messages are small and someone waits to hear them; a photo is
/// what a chat shows next; a video is large and its thumbnail (an image) says it is coming.
/// Within one priority, members start in the order they were enqueued.
public enum UploadPriority: Int, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case other = 0
    case video = 1
    case image = 2
    case voice = 3

    public static func < (lhs: UploadPriority, rhs: UploadPriority) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .voice: "voice"
        case .image: "image"
        case .video: "video"
        case .other: "other"
        }
    }

    /// The priority a file's extension suggests: audio → `voice`, image → `image`, video →
    /// `video`, anything else (or no extension) → `other`. Case-insensitive.
    public init(guessingFrom path: String) {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else {
            self = .other
            return
        }
        let suffix = name[name.index(after: dot)...].lowercased()
        if Self.audio.contains(suffix) {
            self = .voice
        } else if Self.images.contains(suffix) {
            self = .image
        } else if Self.videos.contains(suffix) {
            self = .video
        } else {
            self = .other
        }
    }

    static let audio: Set<String> = [
        "aac", "aif", "aiff", "amr", "caf", "flac", "m4a", "mp3", "oga", "ogg", "opus", "wav", "weba", "3ga",
    ]
    static let images: Set<String> = [
        "avif", "bmp", "dng", "gif", "heic", "heif", "jpeg", "jpg", "png", "tif", "tiff", "webp",
    ]
    static let videos: Set<String> = [
        "3g2", "3gp", "avi", "flv", "hevc", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts", "webm", "wmv",
    ]
}
