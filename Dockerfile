# Aftercare service image. Build: docker build -t aftercare .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
COPY benches benches
RUN cargo build --release --locked --bin aftercare

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 aftercare
COPY --from=build /src/target/release/aftercare /usr/local/bin/aftercare
USER aftercare
ENV AFTERCARE_HTTP_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["aftercare"]
CMD ["serve"]
