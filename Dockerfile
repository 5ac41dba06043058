# smartlock in a container: one image for every part (broker, radio hub, backend, lock agent);
# compose.yaml runs them.  Not built on the development machine (no Docker engine there).
FROM python:3.11-slim-bookworm

# Debian's Mosquitto: 'smartlock broker' runs it, 'smartlock init' hashes passwords with
# mosquitto_passwd.  The package's own service is never started in a container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/smartlock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && rm -rf /opt/smartlock/src

# Everything runs as this user: not root, so the broker needs no 'user' line and drops nothing.
# /site belongs to it, so a new named volume mounted there does too.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin smartlock \
    && mkdir /site && chown smartlock:smartlock /site && chmod 0700 /site
USER smartlock
ENV SMARTLOCK_SITE=/site
VOLUME ["/site"]

ENTRYPOINT ["smartlock"]
CMD ["--help"]
