@testable import DiffuseServer
import DiffuseData
import DiffuseDiffusion
import DiffuseEngine
import DiffuseModels
import DiffuseTraining
import Foundation

/// libFuzzer's entry: one input to the parser that FUZZ_TARGET names. A parser may throw (that is its answer to bad
/// input); it may not crash, trap, leak or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: bytes, count: count)
    target(data)
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

/// The program's entry (SwiftPM names an executable's `main` after its target): libFuzzer's driver, with its
/// command-line flags.
@_cdecl("DiffuseFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc, arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzz)
}

/// The targets by name: scripts/fuzz.sh runs each with its seed corpus.
let targets: [String: (Data) -> Void] = [
    "safetensors": { data in
        guard let file = try? SafeTensorsFile(data: data, path: "fuzz") else { return }
        for name in file.names { _ = try? file.tensor(name) }
        _ = try? Checkpoint(data: data, path: "fuzz")
    },
    "configs": { data in
        let decoder = JSONDecoder()
        if let run = try? decoder.decode(RunConfig.self, from: data) { try? run.validate() }
        _ = try? decoder.decode(UNet2DConfig.self, from: data)
        _ = try? decoder.decode(UNet2DConditionConfig.self, from: data)
        _ = try? decoder.decode(AutoencoderKLConfig.self, from: data)
        if case .object(let json)? = try? decoder.decode(JSONValue.self, from: data) {
            _ = try? SchedulerConfig.read(json, path: "fuzz")
            _ = UNet2DConfig.unknownKeys(in: json)
            _ = try? UNet2DConditionConfig.unknownKeys(in: json)
            _ = AutoencoderKLConfig.unknownKeys(in: json)
        }
    },
    "idx": { data in
        let path = scratch("input.idx", data)
        _ = try? IDXFile(path: path)
    },
    "cifar10": { data in
        _ = try? LabeledImages.cifar10(paths: [scratch("data_batch_1.bin", data)])
    },
    "png": { data in
        let path = scratch("input.png", data)
        _ = try? PNG.read(path)
        _ = try? PNG.read(path, channels: 3)
        for chunk in (try? PNG.text(path)) ?? [] where chunk.keyword == "parameters" {
            _ = GenerationParameters(parsing: chunk.text).text
        }
    },
    "parameters": { data in
        let parameters = GenerationParameters(parsing: String(decoding: data, as: UTF8.self))
        _ = GenerationParameters(parsing: parameters.text)
    },
    // A tokenizer folder: vocab.json, then a zero byte, then merges.txt.
    "tokenizer-files": { data in
        let cut = data.firstIndex(of: 0) ?? data.endIndex
        let folder = scratchFolder("tokenizer")
        try? data[..<cut].write(to: URL(fileURLWithPath: folder + "/vocab.json"))
        try? data[(cut == data.endIndex ? cut : cut + 1)...].write(to: URL(fileURLWithPath: folder + "/merges.txt"))
        if let tokenizer = try? CLIPTokenizer(folder: folder) { _ = tokenizer.encode("a photo of a cat, (masterpiece:1.2)") }
    },
    "prompts": { data in
        _ = promptTokenizer?.encode(String(decoding: data, as: UTF8.self))
    },
    // The JSON bodies of `diffuse serve`: POST /sdapi/v1/txt2img and POST /jobs, checked as the server checks them.
    "server": { data in
        let model = ModelInfo(name: "runs/x", kind: "ddpm", prompt: false, classes: 10, guidable: true, diffusion: true, size: "16x16")
        let sd = ModelInfo(name: "models/sd", kind: "stable-diffusion", prompt: true, classes: nil, guidable: true, diffusion: true, size: nil)
        if let request = try? decodeBody(GenerateRequest.self, from: data), (try? request.validate()) != nil {
            _ = try? request.validate(for: model)
            _ = try? request.validate(for: sd)
        }
        if let type = try? decodeBody(JobType.self, from: data), type.type == "train",
           let request = try? decodeBody(TrainRequest.self, from: data) {
            _ = try? request.validate()
        }
    },
]

let target: (Data) -> Void = {
    let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
    guard let target = targets[name] else {
        FileHandle.standardError.write(Data("FUZZ_TARGET must be one of \(targets.keys.sorted().joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return target
}()

/// The tokenizer the prompts run through: the folder FUZZ_TOKENIZER names (the tests' small CLIP vocabulary).
let promptTokenizer: CLIPTokenizer? = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER"].flatMap { try? CLIPTokenizer(folder: $0) }

/// This process' scratch folder (in memory where /dev/shm is), for parsers that read files.
let scratchRoot: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let folder = "\(base)/diffuse-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}()

func scratchFolder(_ name: String) -> String {
    let folder = scratchRoot + "/" + name
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}

/// The input written as a file of that name in the scratch folder; its path.
func scratch(_ name: String, _ data: Data) -> String {
    let path = scratchRoot + "/" + name
    FileManager.default.createFile(atPath: path, contents: data)
    return path
}
