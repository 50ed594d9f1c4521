# Placeholder until the CUDA image lands (issue 7): a CPU image of the same toolkit.
FROM debian:bookworm-slim
WORKDIR /segnet-bvlc
COPY . .
CMD ["make", "camvid-train"]
