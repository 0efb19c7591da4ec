"""The three deployment profiles: one spec each, rendered through the one config template."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    kind: str  # Triton instance kind for the models that hold weights
    device: str  # torch / onnxruntime device
    dtype: str  # "float32" | "float16"
    working_long_side: int
    size_multiple: int
    detection_size: int
    depth_size: int
    model_size: str  # "tiny" (random small configs) | "full" (real architectures)
    onnx_serving: str  # "python" (onnxruntime inside a python model) | "onnxruntime" (Triton's backend)
    tensorrt: bool = False
    compile_backend: str | None = None  # torch.compile backend for the diffusion UNets and ControlNets
    compile_scope: str = "blocks"  # what it compiles: restyle.diffusion.COMPILE_SCOPES
    max_output_side: int = 2048  # the Triton result's long side; the job API sends <= its working_max_side
    instances: dict[str, int] = field(default_factory=dict)
    # Dynamic batching only where the model has a batch axis (the ONNX models); the queue
    # delay trades a little latency for GPU occupancy under concurrent requests.
    batching: dict[str, int] = field(default_factory=dict)  # model -> max_batch_size
    max_queue_delay_us: int = 2000

    def instance_count(self, model: str) -> int:
        return self.instances.get(model, 1)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        description="CPU, random-initialised small configs of the real architectures (tests, demo)",
        kind="KIND_CPU", device="cpu", dtype="float32",
        working_long_side=256, size_multiple=8, detection_size=320, depth_size=96,
        model_size="tiny", onnx_serving="python",
        batching={"detection": 4, "depth": 4},
    ),
    # Memory budget on one 16 GB T4 (fp16, one CUDA context per python instance ~0.3-0.5 GB;
    # estimates, not measured — no T4 was at hand):
    #   diffusion_engine  SD1.5 UNet 1.7 GB + the fast mode's LCM-fused UNet 1.7 GB
    #                     + 2 ControlNets 1.4 GB + VAE/text 0.4 GB
    #                     + activations at 512x512 (UNet batch 2, VAE decode untiled)
    #                     ~2.0 GB                                                    ≈ 7.2 GB
    #   depth  DPT-Large fp16 0.7 GB + TensorRT workspace + activations of a batch
    #          of 4 at 384x384 (~0.1 GB an image), 1 instance                       ≈ 2.0 GB
    #   detection  YOLOv8n 0.01 GB + TensorRT workspace + activations of a batch
    #          of 8 at 640x640 (~0.03 GB an image), 1 instance                      ≈ 0.5 GB
    #   segmentation  SAM2.1 hiera-tiny 0.08 GB + image embedding activations       ≈ 1.0 GB
    #   room_classification  CLIP ViT-B/32 0.3 GB                                    ≈ 0.7 GB
    #   CUDA contexts of 4 GPU processes (tritonserver, which runs the ONNX models,
    #   and the stubs of segmentation, room_classification, diffusion_engine;
    #   ~0.5 GB each with cuDNN/cuBLAS loaded)                                       ≈ 2.0 GB
    #   total ≈ 13.4 GB, leaving ~2.5 GB headroom (`restyle bench gpu` measures each part and
    #   the sum: t4_mem_mb); CPU-only steps (preprocess, edges, postprocess, quality, stream
    #   orchestration) take no GPU memory.
    "t4": Profile(
        name="t4",
        description="one 16 GB NVIDIA T4, fp16, real checkpoints (or --random-weights for speed runs)",
        kind="KIND_GPU", device="cuda", dtype="float16",
        working_long_side=512, size_multiple=64, detection_size=640, depth_size=384,
        model_size="full", onnx_serving="onnxruntime", tensorrt=True, compile_backend="inductor",
        # The graphs have a dynamic batch axis (fixed H/W, depth normalised per image), so the
        # batcher groups concurrent requests into one TensorRT run; one instance each, as every
        # onnxruntime instance builds and holds its own engine.
        instances={"preprocess": 2, "postprocess": 2, "edges": 2, "quality": 2},
        batching={"detection": 8, "depth": 4},
    ),
    "cpu": Profile(
        name="cpu",
        description="CPU, real checkpoints (slow but real without a GPU)",
        kind="KIND_CPU", device="cpu", dtype="float32",
        working_long_side=512, size_multiple=64, detection_size=640, depth_size=384,
        model_size="full", onnx_serving="python",
        batching={"detection": 4, "depth": 4},
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile '{name}'; choose one of: {', '.join(PROFILES)}") from None
